"""ProM3E masked multimodal VAE: model, checkpoints, losses, masking strategies, training and evaluation."""

from geoprom3e.model.checkpoint import read_checkpoint, save_checkpoint
from geoprom3e.model.config import ProM3EConfig
from geoprom3e.model.prom3e import ForwardOutput, Inference, ProM3E

# training and evaluation (issue 3)
from geoprom3e.model.data import EmbeddingSet, as_embedding_set  # isort: skip
from geoprom3e.model.evaluate import EvaluationReport, evaluate, write_evaluation  # isort: skip
from geoprom3e.model.loss import prom3e_loss  # isort: skip
from geoprom3e.model.masking import MaskingStrategy, get_strategy, list_strategies  # isort: skip
from geoprom3e.model.recipe import TrainRecipe, load_recipe  # isort: skip
from geoprom3e.model.train import TrainResult, train  # isort: skip
from geoprom3e.model.uncertainty import MEASURES as UNCERTAINTY_MEASURES, uncertainty  # isort: skip

__all__ = [
    "EmbeddingSet",
    "EvaluationReport",
    "ForwardOutput",
    "Inference",
    "MaskingStrategy",
    "ProM3E",
    "ProM3EConfig",
    "TrainRecipe",
    "TrainResult",
    "UNCERTAINTY_MEASURES",
    "as_embedding_set",
    "evaluate",
    "get_strategy",
    "list_strategies",
    "load_recipe",
    "prom3e_loss",
    "read_checkpoint",
    "save_checkpoint",
    "train",
    "uncertainty",
    "write_evaluation",
]
