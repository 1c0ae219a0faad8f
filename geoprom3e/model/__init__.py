"""ProM3E masked multimodal VAE: model, checkpoints (and, in later modules, losses, masking, training)."""

from geoprom3e.model.checkpoint import read_checkpoint, save_checkpoint
from geoprom3e.model.config import ProM3EConfig
from geoprom3e.model.prom3e import ForwardOutput, Inference, ProM3E

__all__ = ["ForwardOutput", "Inference", "ProM3E", "ProM3EConfig", "read_checkpoint", "save_checkpoint"]
