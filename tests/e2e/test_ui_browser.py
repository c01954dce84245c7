"""`facegan ui` in a real browser: headless Chromium (Debian's package) driven over the DevTools
protocol through every control of the page, on smoke exports of the three kinds served by
`facegan serve`'s REST API: a StyleGAN2 (with a `facegan directions` edit version: grid, seed,
truncation, cutoff, style mixing, edit sliders), a conditional DCGAN (attribute sliders) and a
pix2pix (upload, translation). Every image the page shows is decoded from the page and compared
pixel for pixel with the signature called directly on the SavedModel with the inputs the page
sent, and those inputs are checked against what the controls were set to.

Skipped only when no chromium is installed outside CI (.ci/run installs Debian's `chromium`; under
CI=true a missing browser fails). Set
FACEGAN_UI_SCREENSHOTS=DIR to keep a screenshot of each page.
"""
import base64
import json
import os

import numpy as np
import pytest

pytestmark = pytest.mark.e2e

tf = pytest.importorskip("tensorflow")
from tests.testlib.browser import Chromium, find_chromium  # noqa: E402

from facegan.images import decode_png, encode_png  # noqa: E402

CHROMIUM = find_chromium()
EDIT_NAMES = ["smiling", "male"]


def _export(root):
    from facegan.generator.edit import export_edit_version
    from facegan.trainer.config import get_preset
    from facegan.trainer.export import export_generator
    from facegan.trainer.networks import build_networks
    paths = {}
    for name, preset, over, kind in [
            ("style", "smoke_stylegan2", {"network.resolution": 8, "network.z_dim": 8, "network.w_dim": 8,
                                          "network.channel_base": 16, "network.channel_max": 8,
                                          "network.mapping_layers": 1}, None),
            ("cond", "smoke_conditional", {"network.resolution": 16, "network.z_dim": 8, "network.filters": 4,
                                           "condition.attributes": "smiling,male"}, None),
            ("p2p", "smoke_pix2pix", {"network.resolution": 16, "network.filters": 4, "network.max_filters": 8},
             "image_to_image")]:
        cfg = get_preset(preset, over)
        paths[name] = export_generator(build_networks(cfg).generator, str(root / name / "1"), cfg=cfg,
                                       metadata={"steps": 0}, max_batch=16, **({"kind": kind} if kind else {}))
    directions = np.random.default_rng(0).standard_normal((len(EDIT_NAMES), 8))
    paths["style"] = export_edit_version(paths["style"], str(root / "style" / "2"), EDIT_NAMES, directions)
    return paths


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    if CHROMIUM is None:
        if os.environ.get("CI"):    # .ci/run installs it: a missing browser there is a failure, not a skip
            pytest.fail("chromium is not installed in CI (.ci/run should have installed Debian's chromium)")
        pytest.skip("chromium is not installed (apt-get install chromium; .ci/run installs it)")
    from facegan.generator import load_generator
    from facegan.serving.manager import ModelSpec
    from facegan.serving.server import Server
    from facegan.serving.ui import UiServer
    root = tmp_path_factory.mktemp("ui_models")
    paths = _export(root)
    srv = Server([ModelSpec(n, str(root / n)) for n in paths], port=0, host="127.0.0.1", rest_api_port=0,
                 poll_wait_s=0).start()
    uis = {n: UiServer(f"127.0.0.1:{srv.rest_api_port}", n, port=0).start() for n in paths}
    direct = {n: load_generator(p) for n, p in paths.items()}
    browser = Chromium(CHROMIUM)
    yield browser, uis, direct
    browser.close()
    for u in uis.values():
        u.stop()
    srv.stop()


# -- reading the page --------------------------------------------------------------------------------
def shown(browser, element_id):
    """uint8 [N, R, R, 3]: the images the page shows in #element_id, decoded from their PNG data URLs."""
    srcs = browser.evaluate(f"[...document.querySelectorAll('#{element_id} img')].map((i) => i.src)")
    assert srcs, f"#{element_id} shows no image"
    return np.stack([decode_png(base64.b64decode(s.split(",", 1)[1])) for s in srcs])


def request_of(browser, element_id):
    return json.loads(browser.evaluate(f"document.getElementById('{element_id}').dataset.request"))


def settle(browser, renders_before):
    """Wait until the page has drawn new images and no request is in flight (key presses send one
    request each; the page draws only the newest answer)."""
    browser.wait_for(f"window.facegan.renders > {renders_before} && window.facegan.busy === 0",
                     timeout=120, what="the page to show the new images")


def renders(browser):
    return browser.evaluate("window.facegan.renders || 0")


def direct_call(gen, signature, inputs):
    """The signature called on the SavedModel itself, inputs typed as the signature declares them."""
    fn = gen.signatures[signature]
    specs = fn.structured_input_signature[1]
    return fn(**{k: tf.constant(v, specs[k].dtype) for k, v in inputs.items()})["images"].numpy()


def check_grid(browser, gen, element_id="grid"):
    req = request_of(browser, element_id)
    np.testing.assert_array_equal(shown(browser, element_id), direct_call(gen, req["signature"], req["inputs"]))
    return req


def open_page(browser, ui, kind, shots=None):
    browser.navigate(ui.url)
    assert browser.wait_for("document.body && document.body.dataset.ready", 180) == "1", \
        browser.evaluate("document.getElementById('error').textContent")
    assert browser.evaluate("document.body.dataset.kind") == kind
    assert browser.evaluate("document.getElementById('error').textContent") == ""


def screenshot(browser, name):
    out = os.environ.get("FACEGAN_UI_SCREENSHOTS")
    if out:
        os.makedirs(out, exist_ok=True)
        browser.screenshot(os.path.join(out, f"ui_{name}.png"))


# -- the three kinds -----------------------------------------------------------------------------------
def test_stylegan2_page_grid_truncation_cutoff_mixing_edit(served):
    browser, uis, direct = served
    gen = direct["style"]
    num_ws = int(gen.metadata["num_ws"])
    open_page(browser, uis["style"], "unconditional")
    # Discovery: the cutoff slider's range is the graph's [0, num_ws]; the edit sliders are the names.
    assert browser.evaluate("window.facegan.numWs") == num_ws
    assert browser.evaluate("window.facegan.editNames") == EDIT_NAMES
    assert check_grid(browser, gen) == {"signature": "sample", "inputs": {"num": 8, "seed": 1, "truncation": 1}}

    n = renders(browser)
    browser.type_into("#seed", "5")
    settle(browser, n)
    assert check_grid(browser, gen)["inputs"] == {"num": 8, "seed": 5, "truncation": 1}

    n = renders(browser)
    browser.type_into("#num", "3")
    settle(browser, n)
    assert check_grid(browser, gen)["inputs"]["num"] == 3

    n = renders(browser)
    browser.press("#truncation", "ArrowLeft", 3)       # 1 -> 0.85, one request per key
    settle(browser, n)
    req = check_grid(browser, gen)
    assert req["signature"] == "sample" and req["inputs"]["truncation"] == pytest.approx(0.85)

    n = renders(browser)
    browser.press("#cutoff", "ArrowLeft", 2)           # num_ws -> num_ws - 2: sample_cutoff
    settle(browser, n)
    req = check_grid(browser, gen)
    assert req["signature"] == "sample_cutoff" and req["inputs"]["truncation_cutoff"] == num_ws - 2
    n = renders(browser)
    browser.press("#cutoff", "End")                    # all layers again: plain `sample`
    settle(browser, n)
    assert check_grid(browser, gen)["signature"] == "sample"

    n = renders(browser)
    browser.press("#edit-male", "ArrowRight", 5)       # strength 0 -> 0.5 on the `male` direction
    settle(browser, n)
    req = check_grid(browser, gen)
    assert req["signature"] == "edit_sample"
    assert req["inputs"]["attribute"] == EDIT_NAMES and req["inputs"]["strength"] == pytest.approx([0, 0.5])
    edited = shown(browser, "grid")
    plain = direct_call(gen, "sample", {k: req["inputs"][k] for k in ("num", "seed", "truncation")})
    assert np.abs(edited.astype(int) - plain).max() > 0, "the edit slider did not change the images"

    n = renders(browser)
    browser.click("#grid-button")
    settle(browser, n)
    check_grid(browser, gen)

    # Style mixing: seed A's row, the mix at the crossover, seed B's row.
    n = renders(browser)
    browser.press("#crossover", "ArrowRight")          # 2 -> 3
    settle(browser, n)
    for row in ("mix-a", "mix", "mix-b"):
        req = check_grid(browser, gen, row)
        assert req["signature"] == "style_mix"
    assert request_of(browser, "mix")["inputs"]["crossover"] == 3
    assert request_of(browser, "mix-b")["inputs"]["crossover"] == 0
    n = renders(browser)
    browser.type_into("#seed-b", "9")
    settle(browser, n)
    assert request_of(browser, "mix")["inputs"]["seed_b"] == 9
    check_grid(browser, gen, "mix")
    screenshot(browser, "stylegan2")


def test_conditional_page_attribute_sliders(served):
    browser, uis, direct = served
    gen = direct["cond"]
    open_page(browser, uis["cond"], "conditional")
    assert browser.evaluate("window.facegan.attributeNames") == ["smiling", "male"]
    assert check_grid(browser, gen)["inputs"]["attributes"] == [0, 0]
    n = renders(browser)
    browser.press("#attr-smiling", "ArrowRight", 20)    # 0 -> 1 in steps of 0.05
    settle(browser, n)
    req = check_grid(browser, gen)
    assert req["signature"] == "sample" and req["inputs"]["attributes"] == pytest.approx([1, 0])
    n = renders(browser)
    browser.press("#truncation", "ArrowLeft", 2)
    settle(browser, n)
    assert check_grid(browser, gen)["inputs"]["truncation"] == pytest.approx(0.9)
    screenshot(browser, "conditional")


def test_pix2pix_page_upload_and_translation(served, tmp_path):
    browser, uis, direct = served
    gen = direct["p2p"]
    open_page(browser, uis["p2p"], "image_to_image")
    assert browser.evaluate("window.facegan.inputSize") == gen.input_resolution    # read from the graph's check
    rng = np.random.default_rng(3)
    # An upload at the model's input size reaches the model unchanged.
    exact = rng.integers(0, 256, (gen.input_resolution, gen.input_resolution, 3), dtype=np.uint8)
    (tmp_path / "exact.png").write_bytes(encode_png(exact))
    n = renders(browser)
    browser.upload("#upload", str(tmp_path / "exact.png"))
    settle(browser, n)
    np.testing.assert_array_equal(shown(browser, "translate-input")[0], exact)
    np.testing.assert_array_equal(shown(browser, "translate-output"), gen.translate(exact[None]))
    # A larger, non-square photo: its centre square, resized; the output is the model's for that input.
    big = np.zeros((40, 64, 3), np.uint8)
    big[:, 12:52] = rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)
    big[:, :12] = big[:, 52:] = 255                    # outside the centre square: must not show
    (tmp_path / "big.png").write_bytes(encode_png(big))
    n = renders(browser)
    browser.upload("#upload", str(tmp_path / "big.png"))
    settle(browser, n)
    x = shown(browser, "translate-input")
    assert x.shape == (1, gen.input_resolution, gen.input_resolution, 3)
    assert abs(float(x.mean()) - float(big[:, 12:52].mean())) < 8, "not the centre square"
    np.testing.assert_array_equal(shown(browser, "translate-output"), gen.translate(x))
    screenshot(browser, "pix2pix")


def test_page_reports_server_errors(served):
    """A refused request shows the server's one-line reason on the page (no silent blank)."""
    browser, uis, _ = served
    open_page(browser, uis["style"], "unconditional")
    n = renders(browser)
    browser.type_into("#num", "99")                    # above the export's max_batch (16)
    browser.wait_for("window.facegan.busy === 0 && document.getElementById('error').textContent", 60)
    assert "16" in browser.evaluate("document.getElementById('error').textContent")
    assert renders(browser) == n
