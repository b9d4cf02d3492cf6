"""The JSON Schema of suite files, generated from the declarations the validator reads
(:mod:`harness.suite_spec`).

The schema declares JSON Schema draft 2020-12 and uses only keywords whose meaning is the same in
draft-07 (``properties``, ``required``, ``enum``, ``if``/``then``/``else``, ``anyOf``, boolean
schemas, ``$ref`` into ``$defs`` as a JSON pointer), so editors whose YAML support is built on a
draft-07 validator (the yaml-language-server behind VS Code's YAML extension and Neovim's yamlls)
complete and check suites with it too.

What it cannot check (registry names, files, comparisons between two values) is listed in
:data:`harness.suite_spec.VALIDATOR_ONLY`; ``segbench run --dry-run`` checks those.

``python scripts/make_suite_schema.py`` writes :data:`SCHEMA_PATH`; ``segbench schema`` prints it.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

from harness.suite_spec import (
    LIMITS,
    MEASURE,
    NO_DEFAULT,
    REQUIRED,
    TOP,
    VALIDATOR_ONLY,
    Key,
    Rule,
)

SCHEMA_PATH = Path(__file__).resolve().parent / "schema" / "suite.schema.json"
DRAFT = "https://json-schema.org/draft/2020-12/schema"
_TYPES = {"bool": "boolean", "int": "integer", "number": "number", "str": "string", "mapping": "object"}


def key_schema(spec: Key, defs: dict[str, dict]) -> dict:
    """The JSON Schema of one declared key (its shape, allowed values, range, default, description).

    A declaration with a ``ref`` is generated once into ``defs`` and referred to (``$ref``)."""
    if spec.ref:
        if spec.ref not in defs:
            defs[spec.ref] = {}  # reserved first: a declaration may refer to itself
            defs[spec.ref] = key_schema(replace(spec, ref=None, nullable=False, default=NO_DEFAULT), defs)
        out: dict = {"$ref": f"#/$defs/{spec.ref}"}
    else:
        out = _shape(spec, defs)
        alternatives = [key_schema(alt, defs) for alt in spec.one_of]
        if alternatives:
            out = {"anyOf": alternatives if spec.kind == "any" else [out, *alternatives]}
    if spec.nullable:
        out = {"anyOf": [out, {"type": "null"}]}
    out = {"description": spec.doc, **out}
    if spec.default is not NO_DEFAULT and spec.default is not None:
        out["default"] = spec.default_value()
    return out


def _shape(spec: Key, defs: dict[str, dict]) -> dict:
    """The schema of ``spec``'s own kind, without description, alternatives or null."""
    if spec.kind in _TYPES:
        out: dict = {"type": _TYPES[spec.kind]}
    elif spec.kind == "enum":
        out = {"enum": list(spec.choices)}
    elif spec.kind == "pair":
        bound = _bounds(spec, "integer")
        out = {"anyOf": [bound, {"type": "array", "items": bound, "minItems": 2, "maxItems": 2}]}
    elif spec.kind == "list":
        out = {"type": "array", "items": key_schema(spec.items, defs) if spec.items else {}}
        out.update({"minItems": spec.min_items} if spec.min_items else {})
        out.update({"maxItems": spec.max_items} if spec.max_items is not None else {})
    elif spec.kind == "object":
        out = {"type": "object", "properties": {k: key_schema(s, defs) for k, s in (spec.fields or {}).items()},
               "additionalProperties": False}
        out.update({"required": list(spec.required)} if spec.required else {})
        out.update({"allOf": [rule_schema(r) for r in spec.rules]} if spec.rules else {})
    else:  # "any"
        out = {}
    if spec.kind in ("int", "number"):
        out.update(_bounds(spec, out["type"]))
    if spec.pattern:
        out["pattern"] = spec.pattern
    out.update(spec.schema or {})
    return out


def _bounds(spec: Key, json_type: str) -> dict:
    """``type`` with ``minimum`` and the largest ``maximum`` (``allow_large``'s, when it lifts it)."""
    out: dict = {"type": json_type}
    if spec.lo is not None:
        out["minimum"] = spec.lo
    hi = spec.upper(large=True)
    if hi is not None:
        out["maximum"] = hi
    return out


def _holds(values: dict) -> dict:
    """A schema that holds when every key in ``values`` is present with that value."""
    return {"properties": {k: {"const": v} for k, v in values.items()}, "required": list(values)}


def rule_schema(rule: Rule) -> dict:
    """One :class:`harness.suite_spec.Rule` as ``if``/``then``."""
    cond: dict = {}
    if rule.when or rule.present:
        cond = _holds(rule.when) if rule.when else {}
        cond["required"] = sorted(set(cond.get("required", [])) | set(rule.present))
    if rule.unless:
        cond = {"not": _holds(rule.unless)}
    forbidden = {k: False for k in rule.forbid}
    then: dict = {"properties": {**forbidden, **{k: {"const": v} for k, v in rule.values.items()}}}
    if rule.require:
        then["required"] = list(rule.require)
    return {"if": cond, "then": then, "description": rule.doc}


def _limits_rule() -> dict:
    """Without ``measure.allow_large: true``, the counts, times and batch sizes keep their ordinary bounds."""
    lifted = {k: {"maximum": s.hi} for k, s in MEASURE.items() if s.large_hi is not None}
    return {"description": "without measure.allow_large: true, counts, times and batch sizes keep their bounds",
            "if": {"properties": {"measure": _holds({"allow_large": True})}, "required": ["measure"]},
            "else": {"properties": {"measure": {"properties": lifted},
                                    "batch_sizes": {"items": {"maximum": LIMITS["batch_size"]}}}}}


def suite_schema() -> dict:
    """The whole schema: top-level keys, the shared definitions, the protocol rules and the bounds."""
    defs: dict[str, dict] = {}
    top = key_schema(Key("object", "", fields=TOP), defs)
    return {
        "$schema": DRAFT,
        "title": "segbench suite",
        "description": "A segbench suite file (suites/*.yaml): models x datasets x devices x precisions x batch "
                       "sizes x runtimes x variants x protocols. Checked at load by `segbench run` as well: "
                       + "; ".join(VALIDATOR_ONLY) + ".",
        "type": "object",
        "properties": top["properties"],
        "additionalProperties": False,
        "allOf": [{"if": {"required": ["extends"]}, "else": {"required": list(REQUIRED)},
                   "description": "models and datasets are required unless the suite extends another"},
                  _limits_rule()],
        "$defs": defs,
    }


def schema_text() -> str:
    """The schema as the shipped file holds it (sorted keys are not used: declaration order reads better)."""
    return json.dumps(suite_schema(), indent=2, ensure_ascii=False) + "\n"


def shipped_text() -> str:
    """The schema file shipped in the package."""
    return SCHEMA_PATH.read_text(encoding="utf-8")
