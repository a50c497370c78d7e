"""The library of cytokine-balance models, by name."""

from ..spec import ModelError, OdeModel
from .acute_inflammation import MODEL as ACUTE_INFLAMMATION
from .gc_receptor import MODEL as GC_RECEPTOR

MODELS: dict[str, OdeModel] = {m.name: m for m in (ACUTE_INFLAMMATION, GC_RECEPTOR)}


def get_model(model: str | OdeModel) -> OdeModel:
    """Return a library model by name (or pass a model object through)."""
    if isinstance(model, OdeModel):
        return model
    try:
        return MODELS[model]
    except KeyError:
        raise ModelError(f"unknown model {model!r}; library models: {sorted(MODELS)}") from None
