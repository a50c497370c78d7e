"""The library of cytokine-balance models, by name; and users' models, by file."""

from ..spec import ModelError, OdeModel
from ..user import is_model_file, load_model_file
from .acute_inflammation import MODEL as ACUTE_INFLAMMATION
from .gc_receptor import MODEL as GC_RECEPTOR

MODELS: dict[str, OdeModel] = {m.name: m for m in (ACUTE_INFLAMMATION, GC_RECEPTOR)}


def get_model(model: str | OdeModel) -> OdeModel:
    """Return a library model by name, a user's model by ``path/to/file.py:NAME``, or pass a model through.

    Raises
    ------
    ModelError
        An unknown name, or a model file that does not define a valid model (see
        :func:`models.user.load_model_file`).
    """
    if isinstance(model, OdeModel):
        return model
    if is_model_file(model):
        return load_model_file(model)
    try:
        return MODELS[model]
    except KeyError:
        raise ModelError(f"unknown model {model!r}; library models: {sorted(MODELS)}, "
                         "or a file of your own: path/to/file.py:NAME") from None
