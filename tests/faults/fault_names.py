"""Let suites name the fault-injection models (``fault-*``) and dataset (``tiny``).

The suite validator checks model and dataset names against the registries; these test doubles
exist only inside cell processes that load tests/faults/sitecustomize.py. ``accept(setattr)``
wraps both checks so the doubles pass; ``setattr`` may be pytest's ``monkeypatch.setattr``.
"""

from __future__ import annotations


def accept(setattr=setattr) -> None:
    import harness.data as data
    import harness.models.pytorch as pytorch

    check_dataset, check_name = data.check_dataset, pytorch.check_name

    def dataset_check(name, options):
        if name != "tiny":
            check_dataset(name, options)

    def name_check(name, task="segmentation"):
        if not name.startswith("fault-"):
            check_name(name, task)

    setattr(data, "check_dataset", dataset_check)
    setattr(pytorch, "check_name", name_check)
