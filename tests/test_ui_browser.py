"""The web UI in a real headless Chromium against the real local stack (gunicorn API, scheduler,
process instances, SQLite and the embedded Redis): one stack and one browser for the module.

The tests run in file order and build on each other: the training started from the wizard is the
run the later tests open, rerun, terminate and compare. Each page is saved as a screenshot at
1280 and 390 pixels wide in docs/screenshots/.
"""
from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import IN_CI, data_roots_for_tests, free_port
from tests.webhook_receiver import Receiver, verify

webdriver = pytest.importorskip("selenium.webdriver")
from selenium.common.exceptions import StaleElementReferenceException  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support import expected_conditions  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

pytestmark = [pytest.mark.stack, pytest.mark.timeout(3000)]  # a training on a busy machine may take many minutes

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
SCREENSHOTS = Path(__file__).resolve().parents[1] / "docs" / "screenshots"
WIDTHS = {"desktop": 1280, "phone": 390}
TRAINING_S = 1800.0
ARCHITECTURE = "shufflenet_v2_x0_5"  # the lightest classifier of the catalog that takes the digits' 16 pixels


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    from trainfaas.adapters.architectures import architectures, cache_path
    from trainfaas.adapters.datasets import write_digits
    from trainfaas.services.core.settings import load_settings
    from trainfaas.services.local.stack import Stack

    home = tmp_path_factory.mktemp("ui", numbered=True)
    home = Path(shutil.copytree(home, Path("/tmp") / f"tfui{os.getpid()}", dirs_exist_ok=True))  # a short path for sockets
    settings = load_settings(home=home, database_url=f"sqlite:///{home / 'trainfaas.db'}", redis_url="", port=free_port(), api_url="",
                             reconcile_interval_s=1.0, data_roots=data_roots_for_tests(home, tmp_path_factory), diagnostics=True,
                             webhook_allow_private=True)  # the webhook test's receiver listens on 127.0.0.1
    # The architecture figures are cached per user; a cache of the stack's own (seeded from the user's)
    # is measured here once, so that the wizard's catalog answers at once whatever else runs.
    shared = cache_path()
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("XDG_CACHE_HOME", str(home / "cache"))
        if shared.exists():
            cache_path().parent.mkdir(parents=True)
            shutil.copy(shared, cache_path())
        architectures(settings.adapters, task="classification")
        running = Stack(settings).start()
        running.client = running.admin_client()
        write_digits(settings.dataset_roots[0] / "digits")
        try:
            yield running
        finally:
            running.stop(drain_timeout_s=5.0)
            shutil.rmtree(home, ignore_errors=True)


@pytest.fixture(scope="module")
def tokens(stack: Any) -> dict[str, str]:
    made = {scope: stack.client.request("POST", "/api/v1/tokens", json={"scope": scope, "project": "default", "name": f"ui {scope}"})["token"]
            for scope in ("read", "write")}
    return {**made, "admin": stack.admin_token}


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not (os.access(CHROMIUM, os.X_OK) and os.access(CHROMEDRIVER, os.X_OK)):
        message = "chromium and chromedriver are not installed (apt-get install chromium chromium-driver)"
        pytest.fail(message) if IN_CI else pytest.skip(message)
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu", "--window-size=1280,900",
                     "--hide-scrollbars", "--force-device-scale-factor=1"):
        options.add_argument(argument)
    driver = webdriver.Chrome(options=options, service=webdriver.ChromeService(executable_path=CHROMEDRIVER))
    driver.implicitly_wait(0)
    driver.command_executor.client_config.timeout = 600  # a page of a stack on a busy machine may take minutes
    yield driver
    driver.quit()


def wait(driver: Any, condition: Any, timeout_s: float = 30.0, what: str = "") -> Any:
    def check(d: Any) -> Any:
        try:
            return condition(d)
        except StaleElementReferenceException:
            return False  # swapped by a live update in between: look again
    return WebDriverWait(driver, timeout_s, poll_frequency=0.2).until(check, message=what)


def css(driver: Any, selector: str) -> Any:
    return driver.find_element(By.CSS_SELECTOR, selector)


def shoot(driver: Any, name: str) -> None:
    """Screenshots of the page at each width, as tall as the page (up to 2,600 pixels)."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    for kind, width in WIDTHS.items():
        driver.set_window_size(width, 900)
        height = driver.execute_script("return document.documentElement.scrollHeight")
        driver.set_window_size(width, min(max(height, 600), 2600))
        driver.execute_script("window.scrollTo(0, 0)")
        driver.save_screenshot(str(SCREENSHOTS / f"{name}-{kind}.png"))
    driver.set_window_size(1280, 900)


def sign_in(driver: Any, stack: Any, secret: str) -> None:
    driver.delete_all_cookies()
    driver.get(f"{stack.settings.api_url}/ui/login")
    css(driver, "input[name=token]").send_keys(secret)
    css(driver, "form button[type=submit]").click()
    wait(driver, lambda d: "/ui/login" not in d.current_url, what="signed in")


def confirm(driver: Any) -> None:
    wait(driver, expected_conditions.alert_is_present(), 10, "the confirmation").accept()


def status_of(driver: Any, execution_id: str) -> str:
    return css(driver, f'tr[data-id="{execution_id}"] .badge').get_attribute("data-status")


def test_a_wrong_token_is_refused(stack: Any, browser: Any) -> None:
    browser.get(f"{stack.settings.api_url}/ui/")
    assert "/ui/login" in browser.current_url
    shoot(browser, "login")
    css(browser, "input[name=token]").send_keys("tf_not-a-real-token")
    css(browser, "form button[type=submit]").click()
    assert "unknown or revoked" in wait(browser, lambda d: css(d, ".alert").text, what="the refusal")
    assert browser.get_cookie("trainfaas_ui") is None


def test_a_quick_start_from_the_wizard_goes_from_pending_to_success_without_reloading(stack: Any, browser: Any, tokens: dict[str, str]) -> None:
    sign_in(browser, stack, tokens["write"])
    browser.get(f"{stack.settings.api_url}/ui/train")
    css(browser, 'input[name=task][value="classification"]').click()
    wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, f'input[name=architecture][value="{ARCHITECTURE}"]'), what="the catalog")
    css(browser, "table.catalog th:nth-child(3)").click()  # sort by parameters
    assert css(browser, "table.catalog th:nth-child(3)").get_attribute("aria-sort") == "ascending"
    css(browser, f'input[name=architecture][value="{ARCHITECTURE}"]').click()
    wait(browser, lambda d: d.find_elements(By.ID, "train-form"), what="the options")
    css(browser, "input[name=dataset]").send_keys("digits")
    css(browser, 'input[name=mode][value="full"]').click()
    shoot(browser, "train")
    timeout = css(browser, "input[name=timeout_s]")
    timeout.send_keys("-5")
    assert wait(browser, lambda d: css(d, '[data-error-for="timeout_s"]').text, what="the field's error")
    timeout.clear()
    rate = css(browser, 'input[name="opt.learning_rate"]')
    rate.send_keys("-1")
    wait(browser, lambda d: css(d, '[data-error-for="configuration.learning_rate"]').text, what="the option's error")
    rate.clear()
    css(browser, 'input[name=mode][value="quick"]').click()
    css(browser, "input[name=max_attempts]").send_keys("2")
    wait(browser, lambda d: css(d, "#check-status").get_attribute("data-ok") == "1", what="the options valid")
    css(browser, "#review").click()
    assert "Quick start" in wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, ".review"), what="the review")[0].text
    shoot(browser, "review")
    # Back in the wizard from the review, what was typed is kept; the quick start is what is sent.
    css(browser, 'button[value="edit"]').click()
    wait(browser, lambda d: d.find_elements(By.ID, "train-form"), what="the wizard again")
    assert css(browser, "input[name=max_attempts]").get_attribute("value") == "2"
    assert css(browser, 'input[name=mode][value="quick"]').is_selected()
    css(browser, "#review").click()
    review = wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, ".review"), what="the review")[0].text
    assert "Quick start" in review and "max_steps" not in review
    css(browser, "#submit-training").click()
    wait(browser, lambda d: "created=" in d.current_url, what="the executions table")
    execution_id = browser.current_url.split("created=")[1]
    browser.execute_script("window.notReloaded = true")
    assert status_of(browser, execution_id) in ("pending", "created", "in-progress")
    seen = {status_of(browser, execution_id)}
    wait(browser, lambda d: seen.add(status_of(d, execution_id)) or "success" in seen, TRAINING_S, "the training's success")
    assert browser.execute_script("return window.notReloaded") is True
    assert seen & {"pending", "in-progress"}
    assert "/2" in css(browser, f'tr[data-id="{execution_id}"]').text
    shoot(browser, "executions")
    chosen = [row["line"] for row in stack.client.logs(execution_id) if row["line"].startswith("quick start:")]
    assert [line.split(":")[1].split()[0] for line in chosen] == ["input_size", "epochs", "random_translate"]  # chosen from the data
    stack.trained = execution_id


def test_the_run_page_draws_metric_charts_and_shows_logs(stack: Any, browser: Any) -> None:
    browser.get(f"{stack.settings.api_url}/ui/executions/{stack.trained}")
    wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "figure.chart canvas"), what="a chart")
    charts = json.loads(css(browser, "#charts-data").get_attribute("textContent"))
    assert charts and all(chart["x"] and chart["lines"] for chart in charts)
    assert len(browser.find_elements(By.CSS_SELECTOR, "figure.chart")) == len(charts)
    legends = browser.find_elements(By.CSS_SELECTOR, "figure.chart .u-legend .u-series")
    assert len(legends) >= len(charts) * 2  # the step and at least one series per chart
    assert browser.find_elements(By.CSS_SELECTOR, "#logs .ln")
    assert ARCHITECTURE in css(browser, "#config-json").text
    shoot(browser, "execution")


def test_rerun_and_terminate_from_the_buttons(stack: Any, browser: Any) -> None:
    url = f"{stack.settings.api_url}/ui/executions/{stack.trained}"
    browser.get(url)
    css(browser, '[data-action="rerun"]').click()
    confirm(browser)
    wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, '[data-action="terminate"]'), what="the rerun")
    assert stack.client.get_execution(stack.trained)["status"] in ("pending", "in-progress", "rerun")
    css(browser, '[data-action="terminate"]').click()
    confirm(browser)
    wait(browser, lambda d: css(d, "#summary .badge").get_attribute("data-status") == "terminated", TRAINING_S, "the termination")
    assert stack.client.get_execution(stack.trained)["status"] == "terminated"


def test_compare_two_runs(stack: Any, browser: Any) -> None:
    model = stack.client.create_model("sleeper", "sleep", configuration={"seconds": 1, "steps": 5})
    other = stack.client.train(model["id"])
    stack.client.wait(other["id"], timeout_s=TRAINING_S)
    browser.get(f"{stack.settings.api_url}/ui/")
    for execution_id in (stack.trained, other["id"]):
        css(browser, f'tr[data-id="{execution_id}"] input[name=execution]').click()
    button = css(browser, "[data-compare-button]")
    assert button.is_enabled()
    button.click()
    wait(browser, lambda d: "/ui/compare" in d.current_url, what="the comparison")
    assert browser.find_elements(By.CSS_SELECTOR, "#config-table tr.differs")
    assert ARCHITECTURE in css(browser, "#config-table").text
    shoot(browser, "compare")


def test_an_admin_changes_max_instances(stack: Any, browser: Any, tokens: dict[str, str]) -> None:
    sign_in(browser, stack, tokens["admin"])
    browser.get(f"{stack.settings.api_url}/ui/services")
    shoot(browser, "services")
    service = stack.client.get_execution(stack.trained)["service"]
    browser.get(f"{stack.settings.api_url}/ui/services/{service}")
    field = css(browser, "#service-settings input[name=max_instances]")
    field.clear()
    field.send_keys("2")
    css(browser, "#service-settings button[type=submit]").click()
    wait(browser, lambda d: "saved=1" in d.current_url, what="the saved settings")
    assert css(browser, '[data-field="max_instances"]').text == "2"
    assert stack.client.request("GET", f"/api/v1/services/{service}")["max_instances"] == 2
    shoot(browser, "service")
    browser.get(f"{stack.settings.api_url}/ui/models")
    shoot(browser, "models")
    browser.get(f"{stack.settings.api_url}/ui/models/{stack.client.get_execution(stack.trained)['model_id']}")
    shoot(browser, "model")


def test_a_read_token_sees_no_action_buttons(stack: Any, browser: Any, tokens: dict[str, str]) -> None:
    sign_in(browser, stack, tokens["read"])
    browser.get(f"{stack.settings.api_url}/ui/executions/{stack.trained}")
    assert css(browser, "#summary .badge").get_attribute("data-status") == "terminated"
    assert not browser.find_elements(By.CSS_SELECTOR, "[data-action], form[data-confirm]")
    browser.get(f"{stack.settings.api_url}/ui/")
    assert stack.trained in browser.page_source and "Train a model" not in browser.page_source


# ---- data sets, checkpoints, evaluation and prediction, webhooks ----------------------------------

@pytest.fixture(scope="module")
def trained(stack: Any) -> dict[str, Any]:
    """Two small trainings queued once: a sleep model (checkpoints in a second) and a classifier of a few steps."""
    ticks = stack.client.create_model("ticks", "sleep", configuration={"seconds": 0.1, "steps": 3})
    tiny = stack.client.create_model("tiny-digits", ARCHITECTURE, configuration={"max_steps": 3, "batch_size": 16})
    return {"ticks": stack.client.train(ticks["id"])["id"], "tiny": tiny["id"],
            "tiny_run": stack.client.train(tiny["id"], dataset="digits")["id"]}


def test_a_data_set_is_registered_and_its_version_shown(stack: Any, browser: Any, tokens: dict[str, str]) -> None:
    sign_in(browser, stack, tokens["write"])
    browser.get(f"{stack.settings.api_url}/ui/datasets")
    for name, value in (("name", "digits-sample"), ("path", "digits"), ("task", "classification")):
        css(browser, f"#register-form input[name={name}]").send_keys(value)
    css(browser, "#register-form button[type=submit]").click()
    # Version 1 hashes every file (1,798 images) before the page answers: slow on a busy machine.
    row = wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, 'tr[data-version="1"]'), TRAINING_S, "the data set's version")[0]
    assert "10: 0, 1, 2" in row.text and "Registered" in css(browser, ".notice").text
    shoot(browser, "dataset")
    browser.get(f"{stack.settings.api_url}/ui/datasets")
    assert "v1" in css(browser, "#datasets").text and "digits-sample" in css(browser, "#datasets").text
    shoot(browser, "datasets")


def test_a_model_is_created_from_a_checkpoint_and_a_checkpoint_deleted(stack: Any, browser: Any, tokens: dict[str, str],
                                                                       trained: dict[str, Any]) -> None:
    stack.client.wait(trained["ticks"], timeout_s=TRAINING_S)
    sign_in(browser, stack, tokens["write"])
    browser.get(f"{stack.settings.api_url}/ui/executions/{trained['ticks']}")
    rows = browser.find_elements(By.CSS_SELECTOR, "#checkpoints tr[data-checkpoint]")
    assert len(rows) >= 2 and "last" in rows[-1].text and "Bytes" in rows[0].text
    shoot(browser, "checkpoints")
    first = rows[0].get_attribute("data-checkpoint")
    css(browser, f'tr[data-checkpoint="{first}"] [data-action="checkpoint-delete"]').click()
    confirm(browser)
    wait(browser, lambda d: not d.find_elements(By.CSS_SELECTOR, f'tr[data-checkpoint="{first}"]'), what="the deleted checkpoint")
    assert first not in {row["id"] for row in stack.client.checkpoints(trained["ticks"])}
    css(browser, "#checkpoints tr[data-checkpoint] [data-action=checkpoint-model]").click()
    confirm(browser)
    wait(browser, lambda d: "/ui/models/" in d.current_url, what="the new model's page")
    assert "step" in css(browser, "h1").text and "trained" in css(browser, ".facts").text


def test_a_prediction_and_an_evaluation_from_the_model_page_show_their_output(stack: Any, browser: Any, tokens: dict[str, str],
                                                                              trained: dict[str, Any]) -> None:
    assert stack.client.wait(trained["tiny_run"], timeout_s=TRAINING_S)["status"] == "success"
    image = next(path for path in sorted((stack.settings.dataset_roots[0] / "digits" / "validation" / "7").iterdir()))
    sign_in(browser, stack, tokens["write"])
    browser.get(f"{stack.settings.api_url}/ui/models/{trained['tiny']}")
    css(browser, "#predict-form textarea[name=inputs]").send_keys(f"digits/validation/7/{image.name}")
    shoot(browser, "model-use")
    css(browser, '[data-action="predict"]').click()
    wait(browser, lambda d: "/ui/executions/" in d.current_url, what="the prediction's run page")
    label = wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, '#predictions [data-field="prediction"] strong'), TRAINING_S,
                 "the prediction")[0].text
    assert label in [str(digit) for digit in range(10)] and image.name in css(browser, "#predictions").text
    shoot(browser, "prediction")
    browser.get(f"{stack.settings.api_url}/ui/models/{trained['tiny']}")
    css(browser, "#evaluate-form input[name=dataset]").send_keys("digits")
    css(browser, '[data-action="evaluate"]').click()
    wait(browser, lambda d: "/ui/executions/" in d.current_url, what="the evaluation's run page")
    metrics = wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "#evaluation th"), TRAINING_S, "the evaluation's metrics")
    assert "accuracy" in {cell.text for cell in metrics}


def test_a_webhook_is_created_pinged_and_deleted(stack: Any, browser: Any, tokens: dict[str, str]) -> None:
    secret = "a-secret-of-twenty-chars"
    sign_in(browser, stack, tokens["write"])
    browser.get(f"{stack.settings.api_url}/ui/webhooks")
    with Receiver() as receiver:
        css(browser, "#webhook-form input[name=url]").send_keys(receiver.url)
        css(browser, "#webhook-form input[name=secret]").send_keys(secret)
        css(browser, '#webhook-form input[name=events][value="execution.failed"]').click()
        css(browser, '[data-action="create-webhook"]').click()
        hook = wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "section[data-webhook]"), what="the webhook")[0]
        webhook_id = hook.get_attribute("data-webhook")
        assert "execution.failed" in hook.text and secret not in browser.page_source
        css(browser, f'section[data-webhook="{webhook_id}"] [data-action="ping-webhook"]').click()
        delivered = f'section[data-webhook="{webhook_id}"] tr[data-delivery] [data-status="succeeded"]'
        wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, delivered), TRAINING_S, "the ping delivered")  # the page updates itself
        ping = receiver.of("ping")[0]
        assert verify(secret, ping["headers"]["X-Trainfaas-Signature"], ping["body"])
        shoot(browser, "webhooks")
    css(browser, f'section[data-webhook="{webhook_id}"] [data-action="delete-webhook"]').click()
    confirm(browser)
    wait(browser, lambda d: not d.find_elements(By.CSS_SELECTOR, f'section[data-webhook="{webhook_id}"]'), what="the deleted webhook")
    assert webhook_id not in {row["id"] for row in stack.client.list_webhooks()}


def test_a_read_token_sees_none_of_the_new_buttons(stack: Any, browser: Any, tokens: dict[str, str], trained: dict[str, Any]) -> None:
    stack.client.create_webhook("https://hooks.example.com/read", "a-secret-of-twenty-chars", project="default")
    dataset = (stack.client.list_datasets() or [stack.client.register_dataset("digits-read", "digits")])[0]["id"]
    sign_in(browser, stack, tokens["read"])
    for path in ("/ui/datasets", f"/ui/datasets/{dataset}", f"/ui/executions/{trained['ticks']}", f"/ui/models/{trained['tiny']}",
                 "/ui/webhooks"):
        browser.get(f"{stack.settings.api_url}{path}")
        assert css(browser, "h1").text and "Data sets" in css(browser, "nav").text
        assert not browser.find_elements(By.CSS_SELECTOR, "[data-action], main form[method=post]"), path
    assert "hooks.example.com/read" in browser.page_source
