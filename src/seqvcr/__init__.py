"""seqvcr: the reference implementation of Seq-VCR (Arefin et al., ICLR 2025)."""

__version__ = "0.1.0"
