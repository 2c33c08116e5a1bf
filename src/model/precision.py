"""Mixed precision for the training step only.

MindSpore 2.10's ms.amp.auto_mixed_precision at O2/O3 changes the Cell it is given in place
(mindspore/train/amp.py): `to_float(float16)` flags the Cell and every sub-Cell, `_auto_black_list`
replaces each BatchNorm in its parent's `_cells` by an `_OutputTo16` wrapper, and only the returned
`_OutputTo32` wrapper casts the result back. Applied to the run's net, validation, PreciseBN, the
representation monitor and `encoder_best.ckpt` would all run the float16 net.

So amp gets a copy of the Cell tree that shares the net's Parameter objects (`copy.deepcopy` with
every Parameter pre-entered in the memo): the training graph updates the very Parameters the float32
net reads, no cast back or sync is needed, and the net the run evaluates and saves keeps no float16
flag. (Parameters themselves stay float32 under amp: to_float inserts casts, it does not convert
them.) The copy holds no data of its own beyond the Cells' small constants.
"""
import copy

O0 = "O0"


def mixed_precision(net, amp_level):
    """The Cell the training loss wraps: `net` itself at O0, else ms.amp.auto_mixed_precision of a
    Parameter-sharing copy of it (float16 compute, BatchNorm in float32, outputs cast to float32),
    leaving `net` untouched.

    Only the device backend's layers are copied this way (amp is refused on CPU, src/device.py): the CPU
    backend's ops.Custom kernels cannot be deep-copied (Primitive.__deepcopy__ passes them `name`)."""
    if amp_level == O0:
        return net
    import mindspore as ms
    shared = {id(param): param for param in net.get_parameters()}
    return ms.amp.auto_mixed_precision(copy.deepcopy(net, shared), amp_level)
