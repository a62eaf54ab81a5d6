"""The Gradio page in a real Chromium (`vit-fer demo`), and the Space folder that train.py --write_space writes,
served by its own `python app.py` against a local model folder.

The browser tests need Debian's chromium and chromium-driver (.ci/run installs them): they never skip in CI
(CI=true), and skip elsewhere with the reason when the browser is missing.
"""

import importlib.util
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import yaml


pytestmark = pytest.mark.end_to_end(longest=True)


ROOT = Path(__file__).resolve().parents[1]
HUB_ID = "vit-fer-tests/tiny-late-attention"
STARTUP_SECONDS = 180
RESULT_SECONDS = 120


def _load_train():
    spec = importlib.util.spec_from_file_location("train_for_demo", ROOT / "train.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def demo_dataset_dir(tmp_path_factory):
    from vit_fer.synthetic import synthesize_dataset

    folder = tmp_path_factory.mktemp("demo-data") / "fer"
    return synthesize_dataset(folder, num_samples=140, seed=1, image_size=32, num_subjects=7, progress=False)


@pytest.fixture(scope="module")
def trained_model_dir(demo_dataset_dir, tmp_path_factory):
    """A tiny late-fusion (attention) model trained by train.py, with its Space (--write_space)."""
    output_dir = tmp_path_factory.mktemp("demo-model") / "run"
    _load_train().main(
        [
            "--dataset_dir", str(demo_dataset_dir), "--output_dir", str(output_dir),
            "--image_size", "32", "--patch_size", "8", "--hidden_size", "32", "--num_hidden_layers", "2",
            "--num_attention_heads", "4", "--intermediate_size", "64", "--mode", "combined",
            "--fusion_strategy", "late", "--fusion_type", "attention", "--num_train_epochs", "12",
            "--per_device_train_batch_size", "8", "--learning_rate", "3e-3", "--disable_tqdm", "true",
            "--save_strategy", "no", "--eval_strategy", "no", "--load_best_model_at_end", "false",
            "--write_space", "--hub_model_id", HUB_ID, "--test_reports", "false",
        ]
    )  # fmt: skip
    # A model trained for seconds knows next to nothing, and the temperature fitted on its few validation samples is
    # huge: every class would show 1/7 and the label compared would be decided by rounding. Temperature 1 keeps the
    # predicted class (argmax does not depend on it) and separates the scores.
    config_path = output_dir / "config.json"
    config = json.loads(config_path.read_text())
    config["calibration_temperature"] = 1.0
    config_path.write_text(json.dumps(config, indent=2))
    return output_dir


@pytest.fixture(scope="module")
def pair(demo_dataset_dir, trained_model_dir):
    """An RGB JPEG and its 16-bit radiometric thermal PNG from the synthetic benchmark: of the first few pairs, the
    one whose best class leads the second by most, so that the label compared is not decided by rounding (a tiny
    model trained for seconds is far from sure of anything)."""
    from vit_fer.inference import load_fer_pipeline

    classifier = load_fer_pipeline(trained_model_dir)
    candidates = []
    for rgb in sorted((demo_dataset_dir / "rgb").rglob("*.jpg"))[:12]:
        thermal = demo_dataset_dir / "thermal" / rgb.relative_to(demo_dataset_dir / "rgb").with_suffix(".png")
        first, second = classifier({"rgb": str(rgb), "thermal": str(thermal)}, top_k=2)["predictions"]
        candidates.append((first["score"] - second["score"], {"rgb": rgb, "thermal": thermal}))
    margin, best = max(candidates, key=lambda candidate: candidate[0])
    assert margin > 1e-3, f"the tiny model has no clear prediction for any pair (best margin {margin})"
    return best


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _serve(command: list[str], log: Path, cwd: Path, port: int, env: dict[str, str] | None = None):
    """Starts a server process and returns it once http://127.0.0.1:`port`/ answers."""
    environment = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", **(env or {})}
    process = subprocess.Popen(command, cwd=cwd, stdout=log.open("w"), stderr=subprocess.STDOUT, env=environment)
    deadline = time.monotonic() + STARTUP_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"{command} exited with {process.returncode}:\n{log.read_text()}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as response:
                if response.status == 200:
                    return process
        except OSError:
            time.sleep(0.25)
    process.kill()
    pytest.fail(f"{command} did not answer on port {port} within {STARTUP_SECONDS} s:\n{log.read_text()}")


def _stop(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@pytest.fixture(scope="module")
def demo_url(trained_model_dir, tmp_path_factory):
    """`vit-fer demo --model DIR --port N` serving on 127.0.0.1."""
    port = _free_port()
    log = tmp_path_factory.mktemp("demo-server") / "server.log"
    command = [str(Path(sys.executable).parent / "vit-fer"), "demo", "--model", str(trained_model_dir)]
    process = _serve([*command, "--host", "127.0.0.1", "--port", str(port)], log, ROOT, port)
    yield f"http://127.0.0.1:{port}/"
    _stop(process)


@pytest.fixture(scope="module")
def browser():
    """Headless Debian Chromium driven by selenium through chromium-driver."""
    binary, driver_binary = shutil.which("chromium"), shutil.which("chromedriver")
    if binary is None or driver_binary is None:
        reason = "Debian's chromium and chromium-driver are not installed (apt-get install chromium chromium-driver)"
        if os.environ.get("CI") == "true":
            pytest.fail(f"{reason}: .ci/run installs them, so CI must not skip the browser tests.")
        pytest.skip(reason)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1280,1800"):
        options.add_argument(argument)
    driver = webdriver.Chrome(options=options, service=Service(driver_binary))
    yield driver
    driver.quit()


def _upload(driver, url: str, files: dict[str, Path]) -> None:
    """Opens the page, puts each file into its modality's upload and presses Classify."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.ui import WebDriverWait

    driver.get(url)
    wait = WebDriverWait(driver, RESULT_SECONDS)
    for modality, path in files.items():
        upload = wait.until(
            expected_conditions.presence_of_element_located((By.CSS_SELECTOR, f"#{modality}-input input[type=file]"))
        )
        upload.send_keys(str(path))
        # The upload is done when the component lists the file (its name and extension on separate lines).
        wait.until(expected_conditions.text_to_be_present_in_element((By.ID, f"{modality}-input"), path.stem))
    driver.find_element(By.ID, "classify").click()


def test_page_shows_the_models_own_prediction_for_an_uploaded_rgb_and_16_bit_thermal_pair(
    browser, demo_url, trained_model_dir, pair, tmp_path
):
    from PIL import Image
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    from vit_fer.inference import load_fer_pipeline

    assert Image.open(pair["thermal"]).mode.startswith("I;16")  # a radiometric frame, as cameras write it
    expected = load_fer_pipeline(trained_model_dir)({m: str(p) for m, p in pair.items()}, top_k=3)

    _upload(browser, demo_url, pair)
    label = WebDriverWait(browser, RESULT_SECONDS).until(
        lambda driver: driver.find_element(By.CSS_SELECTOR, "#prediction h2").text.strip() or False
    )
    browser.save_screenshot(str(tmp_path / "demo.png"))
    print(f"screenshot: {tmp_path / 'demo.png'}")

    assert label == expected["predictions"][0]["label"]
    page = browser.find_element(By.TAG_NAME, "body").text
    # The late-attention model weighs the modalities; the page shows both weights, and the thermal preview names
    # the temperature window the processor reads through.
    weights = browser.find_element(By.ID, "weights")
    assert weights.is_displayed() and "RGB" in weights.text and "thermal" in weights.text
    assert browser.find_element(By.CSS_SELECTOR, "#thermal-preview img").is_displayed()
    # Grad-CAM (the default explanation) overlaid on both images, as `vit-fer explain` draws it.
    assert browser.find_element(By.CSS_SELECTOR, "#explanation img").is_displayed()
    assert "Traceback" not in page


def test_page_reports_a_corrupt_upload_as_a_readable_message(browser, demo_url, pair, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    corrupt = tmp_path / "corrupt_thermal.png"
    corrupt.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4)  # a PNG signature, then garbage

    _upload(browser, demo_url, {"rgb": pair["rgb"], "thermal": corrupt})
    message = WebDriverWait(browser, RESULT_SECONDS).until(
        lambda driver: driver.find_element(By.ID, "message").text.strip() or False
    )
    browser.save_screenshot(str(tmp_path / "error.png"))

    assert "Cannot classify" in message
    assert "corrupt_thermal.png" in message and "unreadable" in message
    assert "Traceback" not in browser.find_element(By.TAG_NAME, "body").text
    # No result is shown next to the error.
    assert not browser.find_elements(By.CSS_SELECTOR, "#prediction h2")


def test_written_space_is_complete_and_serves_the_model_with_python_app_py(trained_model_dir, pair, tmp_path):
    from gradio_client import Client, handle_file

    from vit_fer.inference import load_fer_pipeline

    space = tmp_path / "space"
    shutil.copytree(trained_model_dir / "space", space)  # a Space is its own folder, wherever it is cloned

    header = yaml.safe_load((space / "README.md").read_text(encoding="utf-8").split("---")[1])
    assert header["sdk"] == "gradio" and header["app_file"] == "app.py" and header["models"] == [HUB_ID]
    requirements = (space / "requirements.txt").read_text().split()
    for name in ("torch", "transformers", "gradio", "safetensors", "pillow", "numpy"):
        assert any(line.startswith(f"{name}==") for line in requirements), name
    assert f'MODEL_ID = "{HUB_ID}"' in (space / "app.py").read_text()
    assert "trust_remote_code=True" in (space / "app.py").read_text()
    examples = sorted((space / "examples" / "thermal").rglob("*.png"))
    assert len(examples) == 7 and len(list((space / "examples" / "rgb").rglob("*.jpg"))) == 7
    assert not (space / "examples" / "evidence_masks").exists()

    # The Space runs on the vit-fer sources it carries, not on this checkout's.
    imported = subprocess.run(
        [sys.executable, "-c", "import vit_fer; print(vit_fer.__file__, vit_fer.__version__)"],
        cwd=space, capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert imported.stdout.startswith(str(space / "vit_fer"))

    port = _free_port()
    process = _serve(
        [sys.executable, "app.py", str(trained_model_dir)],
        tmp_path / "space.log",
        space,
        port,
        env={"GRADIO_SERVER_PORT": str(port), "GRADIO_ANALYTICS_ENABLED": "False"},
    )
    try:
        client = Client(f"http://127.0.0.1:{port}/", verbose=False)
        _, prediction, *_ = client.predict(
            handle_file(str(pair["rgb"])), handle_file(str(pair["thermal"])), "", api_name="/classify"
        )
    finally:
        _stop(process)
    expected = load_fer_pipeline(trained_model_dir)({m: str(p) for m, p in pair.items()}, top_k=3)
    assert prediction["label"] == expected["predictions"][0]["label"]
    scores = {item["label"]: item["confidence"] for item in prediction["confidences"]}
    for item in expected["predictions"]:
        assert np.isclose(scores[item["label"]], item["score"], atol=1e-6)


def test_write_space_refuses_a_folder_it_did_not_write_and_a_bare_repo_name(trained_model_dir, tmp_path):
    from vit_fer.space import write_space

    occupied = tmp_path / "occupied"
    occupied.mkdir()
    (occupied / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="occupied"):
        write_space(trained_model_dir, occupied)
    assert (occupied / "notes.txt").read_text() == "mine"
    with pytest.raises(ValueError, match="namespace/name"):
        write_space(trained_model_dir, tmp_path / "new", repo_id="no-namespace")


def test_mistakes_become_messages_naming_the_file_and_the_fix(saved_fer_model, pair):
    from vit_fer.demo import classify_files
    from vit_fer.inference import load_fer_pipeline

    early = load_fer_pipeline(saved_fer_model("early-concat"))
    with pytest.raises(ValueError, match="needs both modalities"):
        classify_files(early, {"rgb": str(pair["rgb"]), "thermal": None}, top_k=3)
    with pytest.raises(ValueError, match=r"s\d+_\d+\.png: expected an RGB photo .* thermal image"):
        classify_files(early, {"rgb": str(pair["thermal"]), "thermal": str(pair["thermal"])}, top_k=3)
    with pytest.raises(ValueError, match="Upload an RGB and a thermal image"):
        classify_files(early, {"rgb": None, "thermal": None}, top_k=3)
    rgb_only = load_fer_pipeline(saved_fer_model("rgb"))
    with pytest.raises(ValueError, match="reads only RGB images"):
        classify_files(rgb_only, {"rgb": str(pair["rgb"]), "thermal": str(pair["thermal"])}, top_k=3)


@pytest.mark.parametrize("kind", ["16-bit", "npy", "8-bit"])
def test_thermal_preview_shows_what_the_model_reads_in_false_colour(saved_fer_model, pair, tmp_path, kind):
    from PIL import Image

    from vit_fer.demo import PREVIEW_SIZE, classify_files
    from vit_fer.inference import load_fer_pipeline
    from vit_fer.synthetic import KELVIN_OFFSET

    counts = np.asarray(Image.open(pair["thermal"]))
    celsius = counts.astype(np.float32) / 100.0 - KELVIN_OFFSET
    thermal = {"16-bit": pair["thermal"], "npy": tmp_path / "frame.npy", "8-bit": tmp_path / "frame.png"}[kind]
    np.save(tmp_path / "frame.npy", celsius)
    Image.fromarray(np.clip((celsius - 20.0) / 20.0 * 255.0, 0, 255).astype(np.uint8)).save(tmp_path / "frame.png")

    classifier = load_fer_pipeline(saved_fer_model("late-attention"))
    probabilities, weights, previews, explanation = classify_files(
        classifier, {"rgb": str(pair["rgb"]), "thermal": str(thermal)}, top_k=3, explain_method="grad_cam"
    )
    assert len(probabilities) == 3 and set(weights) == {"RGB", "thermal"}
    assert explanation.width > 2 * PREVIEW_SIZE  # the overlay figure: maps on both images beside the classes
    assert previews["rgb"].height == PREVIEW_SIZE and previews["thermal"].height == PREVIEW_SIZE
    preview = np.asarray(previews["thermal"])
    # False colour: the face is rendered in the colour map's hues, not in grey.
    assert np.abs(preview[..., 0].astype(int) - preview[..., 2].astype(int)).max() > 100
    previews["thermal"].save(tmp_path / f"thermal-{kind}.png")
    print(tmp_path / f"thermal-{kind}.png")
