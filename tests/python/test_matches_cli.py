"""Responses, gradients, PNGs and records through Python equal the CLI's for the same images."""

import json
import re
import subprocess

import numpy as np

from pictures import grating, noise, write_png


def run_cli(bins, *args, cwd=None):
    done = subprocess.run([str(bins / "stimloop"), *args], capture_output=True, text=True,
                          cwd=cwd)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_predict_equals_the_cli(client, server, bins, images, tmp_path):
    made = write_png(np.stack([grating(30)])[0], tmp_path / "made.png")
    files = [images["vertical"], images["noise"], made]
    remote = json.loads(run_cli(bins, "--server", server.address, "predict", "--model",
                                "demo_population", "--json", *map(str, files)))
    local = json.loads(run_cli(bins, "predict", "--model", "demo_population", "--json",
                               *map(str, files)))
    cli = np.array(remote["responses"], dtype=np.float32)
    assert np.array_equal(cli, np.array(local["responses"], dtype=np.float32))
    from_png = client.predict("demo_population", [f.read_bytes() for f in files])
    assert np.array_equal(from_png, cli)
    # The array the PNG was made from gives the same responses as the CLI reading the PNG.
    assert np.array_equal(client.predict("demo_population", grating(30)), cli[2])


def test_gradient_equals_the_cli(client, bins, images, tmp_path):
    image = noise(8)
    png = write_png(image, tmp_path / "n.png")
    for index in (0, 3):
        out = tmp_path / f"g{index}.npy"
        run_cli(bins, "gradient", "--model", "demo_population", "--image", str(png), "--out",
                str(out), "--output-index", str(index))
        cli = np.load(out)
        python = client.input_gradient("demo_population", image, output_index=index).gradients
        assert cli.dtype == np.float32 and cli.shape == (112, 112, 3)
        assert python.tobytes() == cli.tobytes()


# Fields of a record that differ between any two runs, even of the same request.
VOLATILE = re.compile(r'("(?:created_utc|request_id|wall_ms)": )("[^"]*"|[-0-9.e+]+)')


def test_synthesized_png_and_record_equal_the_cli(client, server, bins, tmp_path):
    cli_dir, py_dir = tmp_path / "cli", tmp_path / "py"
    cli_dir.mkdir()
    py_dir.mkdir()
    run_cli(bins, "--server", server.address, "synthesize", "--model", "demo_population",
            "--objective", "max", "--output-index", "2", "--steps", "12", "--seed", "7",
            "--count", "2", "--out", "stim.png", "--no-progress", cwd=cli_dir)
    result = client.synthesize("demo_population", "max", output_index=2, steps=12, seed=7,
                               count=2, encoding="png")
    for stimulus in result.stimuli:
        png, record = stimulus.save(py_dir / f"stim_{stimulus.index}.png")
        cli_png = cli_dir / f"stim_{stimulus.index}.png"
        assert (py_dir / png).read_bytes() == cli_png.read_bytes()
        ours = (py_dir / record).read_text().replace(str(py_dir) + "/", "")
        theirs = cli_png.with_suffix(".json").read_text()
        assert VOLATILE.sub(r"\1X", ours) == VOLATILE.sub(r"\1X", theirs)
        # The saved record replays: stimloop recomputes the PNG from it, byte for byte.
        assert "identical" in run_cli(bins, "replay", str(record))


def test_synthesized_arrays_are_the_pngs_pixels(client):
    raw = client.synthesize("demo", "max", steps=8, seed=3)
    assert raw.images.shape == (1, 112, 112, 3) and raw.images.dtype == np.uint8
    # The reported response is the model's response to exactly this 8-bit image.
    assert np.array_equal(client.predict("demo", raw.images)[:, 0],
                          np.float32([s.outputs[0] for s in raw.stimuli]))
    import hashlib
    assert hashlib.sha256(raw.images[0].tobytes()).hexdigest() == raw.records[0]["pixels_sha256"]
