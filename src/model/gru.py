"""A single-layer GRU unrolled over a fixed number of steps, built from MatMul/Sigmoid/Tanh.

Export-time stand-in for `nn.GRU` (batch_first, one layer, with bias): MindSpore cannot export
`nn.GRU` to ONNX, and on Ascend `nn.GRU` runs `DynamicGRUV2` in float16. `UnrolledGRU` computes the
same function as `nn.GRU`'s CPU/GPU path (gate order r, z, n as in `mindspore.nn.GRU`'s docs:
r = sigmoid(W_ir x + b_ir + W_hr h + b_hr), z = sigmoid(W_iz x + b_iz + W_hz h + b_hz),
n = tanh(W_in x + b_in + r * (W_hn h + b_hn)), h' = (1 - z) * n + z * h) and holds the same
parameters under the same names (weight_ih_l0 [3H, I], weight_hh_l0 [3H, H], bias_ih_l0 [3H],
bias_hh_l0 [3H]), so a CPC checkpoint loads into it unchanged. Training keeps `nn.GRU`.
"""
import numpy as np
from mindspore import Parameter, Tensor, nn, ops


class UnrolledGRU(nn.Cell):
    """x [B, steps, I] -> (outputs [B, steps, H], h_n), like nn.GRU(batch_first=True).

    h_n is a tuple holding the one layer's final state [B, H] instead of nn.GRU's [1, B, H] tensor:
    h_n[-1] is the same array either way (what src.model.CPC uses), but on a tuple it is no
    operation at all, while MindSpore 2.10's ONNX exporter turns a tensor's [-1] into an empty
    slice (begin -1, end 0) that onnxruntime rejects."""

    def __init__(self, input_size, hidden_size, steps):
        super().__init__()
        self.hidden_size, self.steps = hidden_size, steps
        gate = 3 * hidden_size
        # placeholders: the real values are always loaded from a checkpoint or copied from nn.GRU
        self.weight_ih_l0 = Parameter(Tensor(np.zeros((gate, input_size), np.float32)), name="weight_ih_l0")
        self.weight_hh_l0 = Parameter(Tensor(np.zeros((gate, hidden_size), np.float32)), name="weight_hh_l0")
        self.bias_ih_l0 = Parameter(Tensor(np.zeros(gate, np.float32)), name="bias_ih_l0")
        self.bias_hh_l0 = Parameter(Tensor(np.zeros(gate, np.float32)), name="bias_hh_l0")

    def construct(self, x):
        size = self.hidden_size
        # the input projections of all steps in one matmul: [B, steps, 3H]
        projected = ops.matmul(x, self.weight_ih_l0.transpose(1, 0)) + self.bias_ih_l0
        h = ops.zeros((x.shape[0], size), x.dtype)
        outputs = ()  # a tuple, not a list: the ONNX exporter has no make_list
        for t in range(self.steps):   # a Python loop: unrolled when the graph is compiled
            gi = projected[:, t, :]
            gh = ops.matmul(h, self.weight_hh_l0.transpose(1, 0)) + self.bias_hh_l0
            r = ops.sigmoid(gi[:, :size] + gh[:, :size])
            z = ops.sigmoid(gi[:, size:2 * size] + gh[:, size:2 * size])
            n = ops.tanh(gi[:, 2 * size:] + r * gh[:, 2 * size:])
            h = n + z * (h - n)
            outputs = outputs + (h,)
        return ops.stack(outputs, 1), (h,)
