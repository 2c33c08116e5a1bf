"""The optimizer of every training step (pre-training and the downstream heads): MindSpore's nn.Adam.

MindSpore 2.10's nn.Adam builds, in its constructor, a primitive for sparse (RowTensor) gradients
beside the dense P.Adam it runs: ops.FusedSparseAdam by default, FusedSparseLazyAdam with
use_lazy=True, AdamNoUpdateParam with use_offload=True (mindspore/nn/optim/adam.py). All three are
deprecated since 2.8.0 and each logs it once per process, although this project's gradients are
dense and the sparse primitive never runs. MindSpore's other Adam forms (mint.optim.Adam,
experimental.optim.Adam) are different implementations with other parameter names, which would
change the step's arithmetic and the checkpoints' keys. So nn.Adam stays, built with that one
MindSpore-internal message filtered out, and only while it is built.
"""
import contextlib
import logging

from mindspore import nn

# the message mindspore/common/_decorator.py logs when nn.Adam's constructor builds ops.FusedSparseAdam
INTERNAL_DEPRECATION = "'FusedSparseAdam' is deprecated from version 2.8.0"


class _Drop(logging.Filter):
    def filter(self, record):
        return INTERNAL_DEPRECATION not in record.getMessage()


@contextlib.contextmanager
def _without_internal_deprecation():
    from mindspore import log as ms_log
    logger = ms_log._get_logger()  # MindSpore's own logger (the name carries the process id)
    drop = _Drop()
    logger.addFilter(drop)
    try:
        yield
    finally:
        logger.removeFilter(drop)


def adam(params, learning_rate):
    """nn.Adam(params, learning_rate), without the deprecation message of its unused sparse primitive."""
    with _without_internal_deprecation():
        return nn.Adam(params, learning_rate=learning_rate)
