"""Models a user writes in a file of their own: ``path/to/file.py:NAME``.

The file is ordinary Python that builds an :class:`~models.spec.OdeModel` and binds it to a
name, as the library's modules do::

    # sir.py
    from models import Input, LogNormal, Observable, OdeModel, Parameter, State

    SIR = OdeModel(
        name="sir", title="SIR epidemic", equations="dS/dt = -beta S I / N; ...",
        states=(State("S", "pupils", "susceptible"), ...),
        ...
    )

and ``--model sir.py:SIR`` (command line) or ``model = "sir.py:SIR"`` (hypotheses TOML) fits it.
A loaded model carries its :class:`~models.spec.ModelSource` (the file's name and full text),
which results store, so that reports and comparisons rebuild the model later without the file
(:func:`load_source`). Only that one file is stored: a model file that imports a module of its
own from beside it needs that module again when a result is read without the file.
"""

from __future__ import annotations

import hashlib
import sys
from dataclasses import replace
from pathlib import Path
from types import ModuleType

from .spec import ModelError, ModelSource, OdeModel

__all__ = ["is_model_file", "load_model_file", "load_source", "resolve_model_file"]


def is_model_file(spec: str) -> bool:
    """Whether ``spec`` names a model in a file (``file.py:NAME`` or a bare ``file.py``)."""
    return spec.endswith(".py") or spec.rpartition(":")[0].endswith(".py")


def _split(spec: str) -> tuple[str, str]:
    file, _, attribute = spec.rpartition(":")
    if not file.endswith(".py") or not attribute.isidentifier():
        raise ModelError(f"{spec}: expected path/to/file.py:NAME, the Python file and the name of the "
                         "OdeModel it defines")
    return file, attribute


def resolve_model_file(spec: str, base: str | Path) -> str:
    """Return ``spec`` with a relative file path made absolute against folder ``base``.

    A library model name is returned unchanged.
    """
    if not is_model_file(spec):
        return spec
    file, attribute = _split(spec)
    return f"{(Path(base) / file).resolve()}:{attribute}"


def load_model_file(spec: str) -> OdeModel:
    """Import ``path/to/file.py`` and return its ``OdeModel`` named ``NAME``.

    Parameters
    ----------
    spec
        ``path/to/file.py:NAME`` (a relative path is relative to the working directory).

    Returns
    -------
    OdeModel
        The model, with its :attr:`~models.spec.OdeModel.source` (the file's text) set.

    Raises
    ------
    ModelError
        The file is missing or unreadable, fails to run (a syntax error, an exception), does not
        define ``NAME``, or ``NAME`` is not an ``OdeModel``; the message names the file.
    """
    file, attribute = _split(spec)
    path = Path(file)
    try:
        text = path.read_text(encoding="utf-8-sig")  # a byte-order mark, as Windows editors write
    except FileNotFoundError:
        raise ModelError(f"{file}: no such model file") from None
    except (OSError, UnicodeDecodeError) as error:
        raise ModelError(f"{file}: cannot read the model file ({error})") from None
    return load_source(ModelSource(str(path.resolve()), attribute, text))


_LOADED: dict[ModelSource, OdeModel] = {}


def load_source(source: ModelSource) -> OdeModel:
    """Run a model file's stored text and return its model (the same object for the same source).

    The file's folder, if it still exists, is searched first for modules the text imports.

    Raises
    ------
    ModelError
        As :func:`load_model_file`.
    """
    if source not in _LOADED:
        module = _run(source)
        if not hasattr(module, source.attribute):
            defined = sorted(k for k, v in vars(module).items() if isinstance(v, OdeModel))
            raise ModelError(f"{source.file}: defines no {source.attribute!r} "
                             f"(OdeModels it defines: {defined or 'none'})")
        model = getattr(module, source.attribute)
        if not isinstance(model, OdeModel):
            raise ModelError(f"{source.file}: {source.attribute} is a {type(model).__name__}, "
                             "not a models.OdeModel")
        _LOADED[source] = replace(model, source=source)
    return _LOADED[source]


def _run(source: ModelSource) -> ModuleType:
    """Execute the text as a module (registered in ``sys.modules``, as dataclasses need)."""
    digest = hashlib.sha256(source.text.encode()).hexdigest()[:16]
    module = ModuleType(f"cb_user_model_{digest}")
    module.__file__ = source.file
    folder = str(Path(source.file).parent)
    sys.modules[module.__name__] = module
    sys.path.insert(0, folder)
    try:
        exec(compile(source.text, source.file, "exec"), module.__dict__)  # the user's own model code
    except Exception as error:  # noqa: BLE001  (any failure of the user's code is reported as such)
        del sys.modules[module.__name__]
        hint = (" (results store only the model's one file: a module it imports must be importable "
                "wherever the model is loaded)" if isinstance(error, ImportError) else "")
        raise ModelError(f"{source.file}: the model file failed to run: "
                         f"{type(error).__name__}: {error}{hint}") from None
    finally:
        sys.path.remove(folder)
    return module
