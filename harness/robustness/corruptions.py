"""The corruption axis: ImageNet-C style corruptions of input images, seeded and reproducible.

The implementation is the ``imagecorruptions`` package (Michaelis et al., 2019; the 15
corruptions of Hendrycks & Dietterich's ImageNet-C plus 4 extra ones, for images of any size),
installed with ``pip install 'segbench[robustness]'``. It is imported only when an image is
corrupted: validating a suite needs only the names here.

Reproducibility. The package draws from numpy's global generator (noise, blur angles, frost
crops, snow and spatter layers), and ``impulse_noise`` from scikit-image's ``random_noise``,
which makes a fresh unseeded ``numpy.random.default_rng()`` on current scikit-image. Each call
of :func:`corrupt` therefore, under one lock:

- seeds numpy's global generator with :func:`corruption_seed` (sha256 of seed, corruption,
  severity and sample id: the same for every model, run and process; independent across images),
  and restores the caller's generator state afterwards;
- hands ``random_noise`` a seed drawn from that generator (so impulse noise is seeded too);
- seeds numba's generator as well when the installed package shuffles glass-blur pixels in a
  numba function (its development version does; numba keeps its own generator).

Compatibility. The release on PyPI (1.1.2) was written for older libraries; three adapters make
it import and run unchanged on current ones, without changing what it computes: a
``pkg_resources.resource_filename`` stand-in while it is imported (setuptools >= 81 has no
``pkg_resources``), ``np.float_`` as ``np.float64`` in its module (removed in numpy 2), and
``gaussian(..., multichannel=True)`` passed on as ``channel_axis=-1`` (renamed in scikit-image).

Speed. The release's ``glass_blur`` copies pixels in a Python loop with two numpy calls per
pixel (seconds per image); it is replaced by :mod:`harness.robustness.glass_blur`, which gives
the same bytes about 30x faster (tested against the package's own function).

Image size. The package needs at least 32 x 32 pixels; a smaller image is padded by mirroring
to 32 on each short side, corrupted, and cropped back. Images are RGB; the output is an RGB
uint8 ``PIL.Image`` of the input's size (the package truncates its float result to uint8).
"""

from __future__ import annotations

import hashlib
import importlib.util
import inspect
import os
import sys
import threading
import types
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace

import numpy as np
from PIL import Image

from harness.errors import ConfigError, did_you_mean
from harness.robustness.glass_blur import make_glass_blur

# The package's corruptions in its own order: the 15 ImageNet-C ones, then the 4 extra
# ("validation") ones.
COMMON = ("gaussian_noise", "shot_noise", "impulse_noise", "defocus_blur", "glass_blur", "motion_blur",
          "zoom_blur", "snow", "frost", "fog", "brightness", "contrast", "elastic_transform", "pixelate",
          "jpeg_compression")
EXTRA = ("speckle_noise", "gaussian_blur", "spatter", "saturate")
CORRUPTIONS = COMMON + EXTRA
GROUPS = {"all": CORRUPTIONS, "common": COMMON, "extra": EXTRA, "noise": COMMON[0:3], "blur": COMMON[3:7],
          "weather": COMMON[7:11], "digital": COMMON[11:15]}
SEVERITIES = (1, 2, 3, 4, 5)
MIN_SIDE = 32  # the package's smallest image side, pixels
SPEC_KEYS = ("names", "severities", "clean", "seed", "reference")
INSTALL_HINT = "pip install 'segbench[robustness]'"

_LOCK = threading.RLock()
_STATE: dict = {}  # the adapted package: {"corrupt": fn, "numba_seed": fn | None}


@dataclass(frozen=True)
class CorruptionPoint:
    """One point of the axis: ``name`` None and ``severity`` None for the clean images."""

    name: str | None = None
    severity: int | None = None

    @property
    def clean(self) -> bool:
        return self.name is None

    @property
    def tag(self) -> str:
        """``clean`` or ``<name>-<severity>``, e.g. ``gaussian_noise-3`` (for cell ids and tables)."""
        return "clean" if self.name is None else f"{self.name}-{self.severity}"

    def as_dict(self) -> dict:
        return {"name": self.name, "severity": self.severity}


CLEAN = CorruptionPoint()


@dataclass(frozen=True)
class CorruptionAxis:
    """A validated ``corruptions`` setting: its points (clean first when asked for) and its seed."""

    points: tuple[CorruptionPoint, ...]
    seed: int = 0
    reference: str | None = None  # the model that normalises CE / mCE

    def __iter__(self) -> Iterator[CorruptionPoint]:
        return iter(self.points)

    def __len__(self) -> int:
        return len(self.points)


def corruption_seed(seed: int, name: str, severity: int, sample_id: str) -> int:
    """The 32-bit seed of one corrupted image: sha256 of the four values (stable across processes)."""
    text = f"{int(seed)}\x00{name}\x00{int(severity)}\x00{sample_id}".encode()
    return int.from_bytes(hashlib.sha256(text).digest()[:4], "little")


def check_point(name: str, severity: int, where: str = "corruption") -> None:
    """Raise ConfigError unless ``name`` is a known corruption and ``severity`` an int in 1..5."""
    if name not in CORRUPTIONS:
        raise ConfigError(f"{where}: unknown corruption {name!r}{did_you_mean(name, CORRUPTIONS)}; "
                          f"expected one of {', '.join(CORRUPTIONS)}")
    if isinstance(severity, bool) or not isinstance(severity, (int, np.integer)) or severity not in SEVERITIES:
        raise ConfigError(f"{where}: severity {severity!r} of {name}: expected an integer in 1..5")


def corrupt(image: Image.Image, name: str, severity: int, seed: int = 0, sample_id: str = "") -> Image.Image:
    """``image`` corrupted by ``name`` at ``severity`` (1..5), as an RGB uint8 PIL image of its size.

    Deterministic: the same (image, name, severity, seed, sample_id) gives the same bytes in any
    process. ``sample_id`` (the dataset's sample id) makes the draws of different images
    independent while every model sees the same corrupted image.
    """
    check_point(name, severity)
    if not isinstance(image, Image.Image):
        raise TypeError(f"corrupt: expected a PIL image, got {type(image).__name__}")
    rgb = np.asarray(image.convert("RGB"))
    h, w = rgb.shape[:2]
    if h == 0 or w == 0:
        raise ValueError(f"corrupt: image {sample_id!r} is empty ({w}x{h} pixels)")
    if h < MIN_SIDE or w < MIN_SIDE:
        rgb = np.pad(rgb, ((0, max(0, MIN_SIDE - h)), (0, max(0, MIN_SIDE - w)), (0, 0)), mode="symmetric")
    package = _package()
    with _LOCK, _seeded(corruption_seed(seed, name, severity, sample_id), package["numba_seed"]):
        out = np.asarray(package["corrupt"](rgb, severity=int(severity), corruption_name=name))
    if out.shape[:2] != rgb.shape[:2] or out.dtype != np.uint8:
        raise RuntimeError(f"imagecorruptions {name} returned {out.dtype} {out.shape} for a {rgb.shape} image")
    out = out[:h, :w] if out.ndim == 3 else np.repeat(out[:h, :w, None], 3, axis=2)
    return Image.fromarray(np.ascontiguousarray(out[:, :, :3]), "RGB")


def ensure_installed() -> None:
    """Import (and adapt) the imagecorruptions package now; ConfigError with the install hint if it is missing."""
    _package()


def corrupt_sample(sample, point: CorruptionPoint, seed: int = 0):
    """``sample`` (a :class:`harness.data.base.Sample`) with its image corrupted at ``point``; the
    label is untouched. A clean point returns the sample itself."""
    if point.clean:
        return sample
    return replace(sample, image=corrupt(sample.image, point.name, point.severity, seed, sample.id))


# -- the suite setting --------------------------------------------------------------------------
def _names(value, where: str) -> tuple[str, ...]:
    """Corruption names of a ``names`` value: a group or corruption name, or a list of them."""
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not items:
        raise ConfigError(f"{where}.names: expected a non-empty list of corruption names or one of "
                          f"{', '.join(GROUPS)}; got {value!r}")
    names: list[str] = []
    allowed = list(GROUPS) + list(CORRUPTIONS)
    for item in items:
        if not isinstance(item, str) or item not in allowed:
            raise ConfigError(f"{where}.names: unknown corruption {item!r}{did_you_mean(str(item), allowed)}; "
                              f"expected a group ({', '.join(GROUPS)}) or one of {', '.join(CORRUPTIONS)}")
        names += [n for n in GROUPS.get(item, (item,)) if n not in names]
    return tuple(names)


def _severities(value, where: str) -> tuple[int, ...]:
    items = [value] if isinstance(value, int) and not isinstance(value, bool) else value
    if not isinstance(items, list) or not items:
        raise ConfigError(f"{where}.severities: expected a non-empty list of integers in 1..5, got {value!r}")
    for s in items:
        if isinstance(s, bool) or not isinstance(s, int) or s not in SEVERITIES:
            raise ConfigError(f"{where}.severities: {s!r} is not a severity; expected integers in 1..5")
    if len(set(items)) != len(items):
        raise ConfigError(f"{where}.severities: {items} repeats a severity; expected each at most once")
    return tuple(sorted(items))


def expand_corruptions(spec: dict | None, where: str = "corruptions",
                       models: list[str] | None = None) -> CorruptionAxis:
    """Validate a ``corruptions`` setting and expand it into its points.

    ``spec``: None (clean images only) or a mapping with ``names`` (a list of corruption or group
    names, or one of them; default ``all``: the 19), ``severities`` (list of integers 1..5, or one;
    default all five), ``clean`` (include the clean images, default true), ``seed`` (integer
    >= 0, default 0) and ``reference`` (the model that normalises CE; one of ``models`` when
    given). Points: clean first, then each name with each severity (ascending).
    Raises ConfigError naming ``where``, the key and the allowed values.
    """
    if spec is None:
        return CorruptionAxis((CLEAN,), 0)
    if not isinstance(spec, dict):
        raise ConfigError(f"{where}: expected a mapping with keys {', '.join(SPEC_KEYS)}; got {spec!r}")
    for key in spec:
        if key not in SPEC_KEYS:
            raise ConfigError(f"{where}: unknown key {key!r}{did_you_mean(str(key), SPEC_KEYS)}; "
                              f"expected {', '.join(SPEC_KEYS)}")
    names = _names(spec.get("names", "all"), where)
    severities = _severities(spec.get("severities", list(SEVERITIES)), where)
    clean, seed = spec.get("clean", True), spec.get("seed", 0)
    if not isinstance(clean, bool):
        raise ConfigError(f"{where}.clean: expected true or false, got {clean!r}")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ConfigError(f"{where}.seed: expected an integer >= 0, got {seed!r}")
    reference = spec.get("reference")
    if reference is not None and (not isinstance(reference, str) or (models is not None and reference not in models)):
        allowed = f"one of the suite's models: {', '.join(models)}" if models is not None else "a model name"
        raise ConfigError(f"{where}.reference: {reference!r}{did_you_mean(str(reference), models or [])}; "
                          f"expected {allowed}")
    points = [CorruptionPoint(n, s) for n in names for s in severities]
    return CorruptionAxis(tuple(([CLEAN] if clean else []) + points), seed, reference)


# -- loading and adapting the package -----------------------------------------------------------
@contextmanager
def _seeded(seed32: int, numba_seed):
    """numpy's global generator (and numba's, if given) seeded with ``seed32``; numpy's state restored."""
    saved = np.random.get_state()
    np.random.seed(seed32)
    if numba_seed is not None:
        numba_seed(seed32)
    try:
        yield
    finally:
        np.random.set_state(saved)


class _Delegate(types.ModuleType):
    """A stand-in for module ``target`` in the package's namespace: ``overrides`` first, then ``target``."""

    def __init__(self, target: types.ModuleType, **overrides):
        super().__init__(target.__name__)
        self._target = target
        self.__dict__.update(overrides)

    def __getattr__(self, attr: str):
        return getattr(self._target, attr)


def _seeded_random_noise(random_noise):
    """scikit-image's ``random_noise`` taking its seed from numpy's (seeded) global generator."""
    key = "rng" if "rng" in inspect.signature(random_noise).parameters else "seed"

    def noise(image, *args, **kwargs):
        kwargs.setdefault(key, int(np.random.randint(0, 2**31 - 1)))
        return random_noise(image, *args, **kwargs)
    return noise


def _adapt(module) -> None:
    """Install the compatibility and seeding adapters into the package's ``corruptions`` module."""
    import skimage
    import skimage.filters
    import skimage.util

    if not hasattr(np, "float_"):
        module.np = _Delegate(np, float_=np.float64)
    gaussian = skimage.filters.gaussian
    if "multichannel" not in inspect.signature(gaussian).parameters:
        def gaussian_compat(image, *args, multichannel=None, **kwargs):
            if multichannel:
                kwargs.setdefault("channel_axis", -1)
            return gaussian(image, *args, **kwargs)
        module.gaussian = gaussian_compat
    util = _Delegate(skimage.util, random_noise=_seeded_random_noise(skimage.util.random_noise))
    module.sk = _Delegate(skimage, util=util)


def _known_glass_blur(fn) -> bool:
    """Whether ``fn`` is the 1.1.2 release's glass blur (Python loop of per-pixel draws and view copies),
    which :mod:`harness.robustness.glass_blur` reproduces faster."""
    try:
        source = inspect.getsource(fn)
    except (OSError, TypeError):
        return False
    return ("dx, dy = np.random.randint(-c[1], c[1], size=(2,))" in source
            and "x[h, w], x[h_prime, w_prime] = x[h_prime, w_prime], x[h, w]" in source)


def _numba_seeder(module):
    """A numba function seeding numba's generator, when the package draws glass-blur swaps in numba."""
    if not hasattr(module, "_shuffle_pixels_njit_glass_blur"):
        return None
    import numba

    @numba.njit
    def seed(s):
        np.random.seed(s)
    return seed


def _pkg_resources_stand_in() -> types.ModuleType:
    shim = types.ModuleType("pkg_resources")

    def resource_filename(package: str, name: str) -> str:
        return os.path.join(os.path.dirname(sys.modules[package].__file__), name)
    shim.resource_filename = resource_filename
    return shim


def _package() -> dict:
    """The adapted ``imagecorruptions`` (imported once); ConfigError with the install hint if missing."""
    with _LOCK:
        if _STATE:
            return _STATE
        shim = None
        if importlib.util.find_spec("pkg_resources") is None:
            shim = sys.modules["pkg_resources"] = _pkg_resources_stand_in()
        try:
            with warnings.catch_warnings():  # pkg_resources' and scipy's deprecation notices
                warnings.simplefilter("ignore")
                import imagecorruptions
                from imagecorruptions import corruptions as module
        except ImportError as e:
            raise ConfigError(f"corruptions need the imagecorruptions package ({e}); {INSTALL_HINT}") from e
        finally:
            if shim is not None and sys.modules.get("pkg_resources") is shim:
                del sys.modules["pkg_resources"]
        missing = [n for n in CORRUPTIONS if n not in imagecorruptions.corruption_dict]
        if missing:
            raise ConfigError(f"the installed imagecorruptions lacks {', '.join(missing)}; {INSTALL_HINT}")
        _adapt(module)
        _STATE.update(corrupt=imagecorruptions.corrupt, numba_seed=_numba_seeder(module),
                      package_glass_blur=module.glass_blur)
        if _known_glass_blur(module.glass_blur):
            module.glass_blur = imagecorruptions.corruption_dict["glass_blur"] = make_glass_blur(module.gaussian)
        return _STATE
