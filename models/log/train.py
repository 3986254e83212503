"""Log-line model: a tiny two-head MLP trained with numpy (full-batch Adam, fixed seed) and its
ONNX export (float teacher; weight-only int8 QDQ student).

Graph: features [N,W] -> MatMul W1 -> Add b1 -> Relu -> MatMul W2 -> Add b2 -> logits [N,1+K];
scores = Concat(Sigmoid(logits[:, :1]), Softmax(logits[:, 1:])) -> [N, 1+K].
"""
import numpy as np
import onnx
import scipy.sparse as sp
from onnx import TensorProto, helper, numpy_helper

OPSET = 17


def _softmax(z):
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def _sigmoid(z):
    return 1.0 / (1.0 + np.exp(-np.clip(z, -40, 40)))


class MLP:
    def __init__(self, width, hidden, k, seed):
        rng = np.random.default_rng(seed)
        self.W1 = (rng.standard_normal((width, hidden)) * np.sqrt(2.0 / 64)).astype(np.float64)
        self.b1 = np.zeros(hidden)
        self.W2 = rng.standard_normal((hidden, 1 + k)) * np.sqrt(1.0 / hidden)
        self.b2 = np.zeros(1 + k)

    def params(self):
        return [self.W1, self.b1, self.W2, self.b2]

    def forward(self, X):
        Z1 = X @ self.W1 + self.b1
        H = np.maximum(Z1, 0)
        return Z1, H, H @ self.W2 + self.b2

    def predict(self, X):
        L = self.forward(X)[2]
        return np.concatenate([_sigmoid(L[:, :1]), _softmax(L[:, 1:])], axis=1)

    def fit(self, X, alert_t, alert_w, sev_t, sev_w, steps=300, lr=0.01, l2=1e-4):
        """alert_t [n] targets in [0,1], alert_w [n] weights (0 = no label); sev_t [n,K]
        target distributions, sev_w [n] weights. Full-batch Adam; deterministic."""
        X = sp.csr_matrix(X, dtype=np.float64)
        XT = X.T.tocsr()
        aw = alert_w / max(alert_w.sum(), 1e-12)
        sw = sev_w / max(sev_w.sum(), 1e-12)
        ps = self.params()
        m = [np.zeros_like(p) for p in ps]
        v = [np.zeros_like(p) for p in ps]
        b1, b2, eps = 0.9, 0.999, 1e-8
        for t in range(1, steps + 1):
            Z1, H, L = self.forward(X)
            dL = np.zeros_like(L)
            dL[:, 0] = (_sigmoid(L[:, 0]) - alert_t) * aw
            dL[:, 1:] = (_softmax(L[:, 1:]) - sev_t) * sw[:, None]
            gW2 = H.T @ dL + l2 * self.W2
            gb2 = dL.sum(axis=0)
            dZ1 = (dL @ self.W2.T) * (Z1 > 0)
            gW1 = np.asarray(XT @ dZ1) + l2 * self.W1
            gb1 = dZ1.sum(axis=0)
            for i, (p, g) in enumerate(zip(ps, [gW1, gb1, gW2, gb2])):
                m[i] = b1 * m[i] + (1 - b1) * g
                v[i] = b2 * v[i] + (1 - b2) * g * g
                p -= lr * (m[i] / (1 - b1 ** t)) / (np.sqrt(v[i] / (1 - b2 ** t)) + eps)
        return self


def quantize(W):
    """Per-tensor symmetric int8 (zero point 0)."""
    scale = np.float32(np.abs(W).max() / 127.0)
    Wq = np.clip(np.round(W / scale), -127, 127).astype(np.int8)
    return Wq, scale


def fake_quant(mlp):
    """Replace the weights by their int8-dequantized values (what the student ONNX computes)."""
    for name in ["W1", "W2"]:
        Wq, s = quantize(getattr(mlp, name))
        setattr(mlp, name, Wq.astype(np.float64) * np.float64(s))
    return mlp


def to_onnx(mlp, width, name, int8):
    """Teacher (float MatMul weights) or student (int8 -> DequantizeLinear -> MatMul)."""
    k1 = mlp.W2.shape[1]
    x = helper.make_tensor_value_info("features", TensorProto.FLOAT, ["N", width])
    y = helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["N", k1])
    inits, nodes = [], []
    for i, (W, b) in enumerate([(mlp.W1, mlp.b1), (mlp.W2, mlp.b2)]):
        if int8:
            Wq, scale = quantize(W)
            inits += [numpy_helper.from_array(Wq, f"W{i}_q"),
                      numpy_helper.from_array(np.array(scale, np.float32), f"W{i}_scale"),
                      numpy_helper.from_array(np.array(0, np.int8), f"W{i}_zp")]
            nodes.append(helper.make_node("DequantizeLinear", [f"W{i}_q", f"W{i}_scale", f"W{i}_zp"], [f"W{i}"]))
        else:
            inits.append(numpy_helper.from_array(W.astype(np.float32), f"W{i}"))
        inits.append(numpy_helper.from_array(b.astype(np.float32), f"b{i}"))
    inits += [numpy_helper.from_array(np.array(v, np.int64), n) for n, v in
              [("s0", [0]), ("s1", [1]), ("send", [k1]), ("ax", [1])]]
    nodes += [helper.make_node("MatMul", ["features", "W0"], ["mm0"]),
              helper.make_node("Add", ["mm0", "b0"], ["a0"]),
              helper.make_node("Relu", ["a0"], ["h0"]),
              helper.make_node("MatMul", ["h0", "W1"], ["mm1"]),
              helper.make_node("Add", ["mm1", "b1"], ["logits"]),
              helper.make_node("Slice", ["logits", "s0", "s1", "ax"], ["alert_logit"]),
              helper.make_node("Slice", ["logits", "s1", "send", "ax"], ["sev_logits"]),
              helper.make_node("Sigmoid", ["alert_logit"], ["alert_p"]),
              helper.make_node("Softmax", ["sev_logits"], ["sev_p"], axis=1),
              helper.make_node("Concat", ["alert_p", "sev_p"], ["scores"], axis=1)]
    g = helper.make_graph(nodes, name, [x], [y], inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="models/log")
    m.ir_version = 8
    onnx.checker.check_model(m)
    return m
