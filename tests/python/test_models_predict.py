"""ListModels, GetModel, Predict and InputGradient through the Python client."""

import numpy as np
import pytest

from pictures import grating, noise


def test_models_lists_the_demo_models(client):
    models = client.models()
    # The demo models first; calibrated session channels join them as models.
    assert [m.id for m in models][:2] == ["demo", "demo_population"]
    demo, population = models[:2]
    assert demo.demo and population.demo
    assert demo.input_shape == (112, 112, 3)
    assert (demo.num_outputs, population.num_outputs) == (1, 4)
    assert len(demo.sha256) == 64 and demo.parameters > 0 and demo.macs_per_image > 0
    assert demo.backend == "cpu" and len(demo.filters) == 5


def test_model_describes_one_model(client):
    assert client.model("demo_population").num_outputs == 4


def test_predict_takes_a_batch_and_returns_float32_rows(client):
    batch = np.stack([grating(0), grating(90), noise(1)])
    responses = client.predict("demo", batch)
    assert responses.dtype == np.float32 and responses.shape == (3, 1)
    # The demo prefers vertical gratings (orientation 0: stripes vary along x).
    assert responses[0, 0] > responses[1, 0] + 1.0


def test_predict_single_image_drops_the_batch_axis(client):
    single = client.predict("demo_population", grating(0))
    assert single.shape == (4,)
    batch = client.predict("demo_population", grating(0)[None])
    assert np.array_equal(batch[0], single)


def test_predict_several_models_returns_a_dict(client):
    both = client.predict(["demo", "demo_population"], [grating(45), noise(2)],
                          priority="rig", deadline_ms=10_000, request_id="py-predict-1")
    assert list(both) == ["demo", "demo_population"]
    assert both["demo"].shape == (2, 1) and both["demo_population"].shape == (2, 4)


def test_predict_accepts_png_bytes(client, images):
    from_png = client.predict("demo", images["noise"].read_bytes())
    assert from_png.shape == (1,)


def test_predict_rejects_wrong_arrays_naming_the_argument(client):
    with pytest.raises(TypeError, match=r"images\[1\]: dtype float64"):
        client.predict("demo", [grating(0), np.zeros((112, 112, 3))])
    with pytest.raises(ValueError, match=r"images: shape \(112, 112\)"):
        client.predict("demo", np.zeros((112, 112), dtype=np.uint8))


def test_input_gradient_shapes_and_values(client):
    g = client.input_gradient("demo", grating(0))
    assert g.gradients.dtype == np.float32 and g.gradients.shape == (112, 112, 3)
    assert np.isfinite(g.gradients).all() and np.abs(g.gradients).max() > 0
    assert np.array_equal(g.responses, client.predict("demo", grating(0)))
    batch = client.input_gradient("demo", np.stack([grating(0), noise(4)]))
    assert batch.gradients.shape == (2, 112, 112, 3) and batch.responses.shape == (2, 1)
    assert np.array_equal(batch.gradients[0], g.gradients)


def test_input_gradient_with_an_output_seed(client):
    image = noise(5)
    seeded = client.input_gradient("demo_population", image, output_seed=[0, 1, 0, 0])
    indexed = client.input_gradient("demo_population", image, output_index=1)
    assert np.array_equal(seeded.gradients, indexed.gradients)


def test_input_gradient_of_a_png(client, images):
    g = client.input_gradient("demo", images["vertical"].read_bytes())
    assert g.gradients.shape == (112, 112, 3)


def test_health_is_serving(client):
    assert client.health() == "SERVING"
