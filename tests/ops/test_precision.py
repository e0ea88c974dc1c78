"""Mixed precision's operators, as far as a CPU can test it: the float16
casts of the NumPy-mode operators in arrays and graphs, the head's float32
outputs, gradients through the casts, and AMP switched on once."""
import json

import mxnet as mx
import numpy as onp
import pytest
from mxnet import autograd, np

import rpn
from helpers.models import FakeAmp
from rpn.ops import precision as mixed_precision


@pytest.fixture
def restore_operators(monkeypatch):
    """Put the NumPy-mode operators back after a test wraps them."""
    for module in mixed_precision._numpy_modules():
        for name in mixed_precision.AMP_OPERATORS:
            monkeypatch.setattr(module, name, getattr(module, name))
    monkeypatch.setitem(mixed_precision._STATE, "enabled", False)


def test_the_operators_get_float16_inputs_in_arrays(restore_operators, monkeypatch):
    import mxnet.ndarray.numpy_extension as nd_npx
    seen = []
    monkeypatch.setattr(nd_npx, "convolution",
                        lambda *args, **kwargs: seen.append([a.dtype for a in args]))
    mixed_precision.wrap_numpy_operators()
    mixed_precision.wrap_numpy_operators()          # once only
    nd_npx.convolution(np.ones((1, 3, 4, 4)), np.ones((2, 3, 1, 1)), kernel=(1, 1),
                       num_filter=2, no_bias=True)
    assert seen == [[onp.float16, onp.float16]]
    ints = np.ones((2,), dtype="int32")
    assert mixed_precision._cast(ints, "float16") is ints          # only float32 <-> 16


def test_the_graph_casts_every_convolutions_inputs_to_float16(restore_operators):
    mixed_precision.wrap_numpy_operators()
    mixed_precision._STATE["enabled"] = True
    head = rpn.RPNOutput(num_anchors=3, channels=8)
    head.initialize()
    head.hybridize()
    outputs = head(mx.sym.var("data").as_np_ndarray())
    graph = json.loads(outputs[0].tojson(remove_amp_cast=False))
    nodes = graph["nodes"]
    convolutions = [n for n in nodes if n["op"] == "Convolution"]
    assert len(convolutions) == 2          # the 3x3 and the class predictor
    for node in convolutions:
        for source, *_ in node["inputs"]:
            assert nodes[source]["op"] == "amp_cast", nodes[source]
            assert nodes[source]["attrs"]["dtype"] == "float16"
    # and the head's outputs are cast back to float32
    last = nodes[graph["heads"][0][0]]
    assert last["op"] == "Cast" and last["attrs"]["dtype"] == "float32"


def test_gradients_flow_through_the_casts_to_float32_parameters():
    x = np.array([[0.5, -1.25, 3.0]])
    x.attach_grad()
    with autograd.record():
        y = mixed_precision._cast(x, "float16")
        loss = (y.astype("float32") ** 2).sum()
    loss.backward()
    assert y.dtype == onp.float16 and x.grad.dtype == onp.float32
    onp.testing.assert_allclose(x.grad.asnumpy(), 2 * x.asnumpy())


def test_float32_casts_only_under_amp(monkeypatch):
    a = np.ones((2,), dtype="float16")
    assert mixed_precision.float32(a)[0] is a
    monkeypatch.setitem(mixed_precision._STATE, "enabled", True)
    assert mixed_precision.float32(a)[0].dtype == onp.float32


def test_init_turns_amp_on_once(restore_operators):
    fake = FakeAmp()
    assert mixed_precision.init(fake) is fake and mixed_precision.enabled()
    mixed_precision.init(fake)
    assert fake.calls == [("init", "float16")]
    assert all(getattr(getattr(m, n), "rpn_amp", False)
               for m in mixed_precision._numpy_modules() for n in mixed_precision.AMP_OPERATORS)
