"""The hooks around the training steps: the divergence check."""
import pytest

from conftest import small_model, tiny_batches, train_model


def test_a_diverging_loss_names_the_learning_rates_of_each_part():
    model = small_model(seed=1)
    with pytest.raises(FloatingPointError,
                       match=r"rates \(output 1000000.0, backbone 1000000.0\)"):
        train_model(model, tiny_batches(4) * 3, epochs=1, lr=1e6, log_interval=1,
                    optimizer="sgd")
