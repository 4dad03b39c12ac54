"""seqvcr: the reference implementation of Seq-VCR (Arefin et al., ICLR 2025, arXiv 2411.02344), and
its public API in one place."""

from seqvcr.config import Config, load_config
from seqvcr.entropy import matrix_entropy
from seqvcr.model import GPT, GPTConfig, GPTOutput
from seqvcr.objectives import SeqVCR, SeqVCROutput, seq_vcr_loss, seq_vcr_terms

__version__ = "0.1.0"

__all__ = ["GPT", "Config", "GPTConfig", "GPTOutput", "SeqVCR", "SeqVCROutput", "load_config",
           "matrix_entropy", "seq_vcr_loss", "seq_vcr_terms", "train"]


def train(*args, **kwargs):  # noqa: ANN002, ANN003, ANN201 - thin lazy wrapper
    """``seqvcr.training.train`` (imported lazily: it pulls in the whole training stack)."""
    from seqvcr.training import train as _train

    return _train(*args, **kwargs)
