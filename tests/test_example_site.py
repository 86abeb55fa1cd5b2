"""The example site (examples/site) end to end in headless Chromium, against real ``credcheck serve`` processes.

The test starts a range server and a pair server (``credcheck serve`` on 127.0.0.1, from the demo data the site
builds) and the site (uvicorn, in a process of its own), then drives Debian's chromium through its
chromedriver (no browser is downloaded). Without chromium and chromedriver the tests skip, except under CI,
which installs them (.ci/run). A failing test saves a screenshot and names it in its report (conftest.py).
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from examples.site.__main__ import build_data
from examples.site.app import ADMIN, CANARY, CANARY_USER, USERS, make_app
from fastapi.testclient import TestClient
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support import expected_conditions
from selenium.webdriver.support.wait import WebDriverWait

import credcheck

from .helpers import running_server

ROOT = Path(__file__).resolve().parents[1]
WAIT = 60  # seconds an explicit wait may take on a busy machine before the test fails
SERVE = """
import sys
from credcheck.cli import main
sys.exit(main(["serve", "--port", "0", "--server", sys.argv[1], *sys.argv[2:]]))
"""
SITE = f"""
import sys
sys.path.insert(0, {str(ROOT)!r})
from examples.site.__main__ import main
main(["--port", "0", *sys.argv[2:]])
"""
CAROL = "carol@shop.example"  # her username and password leaked together at the shop (the demo's combo list)
CLEAN = "a clean one: 7#pQ!vR2 wombat"


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str, str]:
    """The demo's range store, pair store and key, built as ``python -m examples.site`` builds them."""
    return build_data(str(tmp_path_factory.mktemp("site-data")))


@pytest.fixture(scope="module")
def ranges(data: tuple[str, str, str]) -> Iterator[str]:
    """``credcheck serve --store STORE``."""
    with running_server("wsgiref", ["--store", data[0]], script=SERVE) as server:
        yield server.url


@pytest.fixture(scope="module")
def pairs(data: tuple[str, str, str]) -> Iterator[str]:
    """``credcheck serve --pairs PAIRS --key KEY``."""
    with running_server("wsgiref", ["--pairs", data[1], "--key", data[2]], script=SERVE) as server:
        yield server.url


@contextlib.contextmanager
def running_site(*argv: str) -> Iterator[str]:
    """``python -m examples.site --port 0 ARGV`` in a process of its own; yields its URL. Once it stopped, no
    username or password the tests typed is in anything it printed (its log records included), nor any error."""
    with running_server("site", argv, script=SITE) as server:
        yield server.url
    printed = "".join(server.stdout + server.stderr)
    assert "Traceback" not in printed  # no request failed, and it stopped cleanly
    for secret in (*USERS, *USERS.values(), CLEAN, "dora@site.example", "erin@site.example", "123456", "qwerty"):
        assert secret not in printed


@pytest.fixture(scope="module")
def site(ranges: str, pairs: str) -> Iterator[str]:
    """The example site against both services, under the default failure policy."""
    with running_site("--ranges", ranges, "--pairs", pairs) as url:
        yield url


@pytest.fixture(scope="module")
def chromium() -> Iterator[WebDriver]:
    """Headless chromium driven through the system's chromedriver."""
    binary, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if binary is None or driver is None:
        if os.environ.get("CI"):
            pytest.fail("chromium or chromedriver is missing: CI installs chromium and chromium-driver (.ci/run)")
        pytest.skip("chromium and chromedriver are not installed (apt-get install chromium chromium-driver)")
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1000,800"):
        options.add_argument(argument)
    chrome = webdriver.Chrome(options=options, service=Service(driver))
    try:
        yield chrome
    finally:
        chrome.quit()


@pytest.fixture
def browser(chromium: WebDriver) -> WebDriver:
    """The browser with no session: each test starts logged out."""
    chromium.delete_all_cookies()
    return chromium


def submit(browser: WebDriver, url: str, **fields: str) -> None:
    """Open the form at ``url``, type ``fields`` into it, send it and wait for the page that answers."""
    browser.get(url)
    for name, value in fields.items():
        browser.find_element(By.NAME, name).send_keys(value)
    page = browser.find_element(By.TAG_NAME, "html")
    browser.find_element(By.ID, "submit").click()
    WebDriverWait(browser, WAIT).until(expected_conditions.staleness_of(page))


def log_out(browser: WebDriver) -> None:
    page = browser.find_element(By.TAG_NAME, "html")
    browser.find_element(By.ID, "logout").click()
    WebDriverWait(browser, WAIT).until(expected_conditions.staleness_of(page))


def alert(browser: WebDriver, name: str = "error") -> str:
    """The text of the page's notice (``name="notice"``) or error."""
    return browser.find_element(By.ID, name).text


def path(browser: WebDriver, site: str) -> str:
    return browser.current_url.removeprefix(site)


def test_signup_refuses_a_leaked_password_with_its_count(browser: WebDriver, site: str, ranges: str) -> None:
    """Sign-up with a leaked password is refused, the page saying how often it was seen; a clean one is taken."""
    with credcheck.open(ranges) as source:
        count = source.check("123456").count
    assert count
    submit(browser, site + "/signup", username="dora@site.example", password="123456")
    assert path(browser, site) == "/signup"
    assert "appeared in a data breach" in alert(browser)
    assert f"{count:,} time" in alert(browser)
    submit(browser, site + "/signup", username="dora@site.example", password=CLEAN)
    assert path(browser, site) == "/"
    assert browser.find_element(By.ID, "who").text == "Logged in as dora@site.example."


def test_a_leaked_pair_is_held_on_the_change_page_until_it_changes(browser: WebDriver, site: str) -> None:
    """A log-in with a leaked pair lands on the change page and cannot leave it (log-out aside) until the
    password is changed, to a password that did not leak; then the user goes anywhere and logs in as usual."""
    submit(browser, site + "/login", username=CAROL, password=USERS[CAROL])
    assert path(browser, site) == "/password"
    assert "Choose a new password to continue." in alert(browser, "notice")
    for elsewhere in ("/", "/admin", "/signup"):
        browser.get(site + elsewhere)
        assert path(browser, site) == "/password", elsewhere
    log_out(browser)
    assert path(browser, site) == "/"
    assert "Sign up or log in." in browser.page_source
    submit(browser, site + "/login", username=CAROL, password=USERS[CAROL])
    assert path(browser, site) == "/password"  # still pending: log-out was no way out
    submit(browser, site + "/password", password="qwerty")
    assert "appeared in a data breach" in alert(browser)  # the new password is checked
    browser.get(site + "/")
    assert path(browser, site) == "/password"
    submit(browser, site + "/password", password=CLEAN)
    assert path(browser, site) == "/"
    assert alert(browser, "notice") == "Your password was changed."
    browser.get(site + "/signup")
    assert path(browser, site) == "/signup"
    log_out(browser)
    submit(browser, site + "/login", username=CAROL, password=CLEAN)
    assert path(browser, site) == "/"
    assert browser.find_element(By.ID, "who").text == f"Logged in as {CAROL}."


def test_the_canary_log_in_shows_on_the_admin_page(browser: WebDriver, site: str) -> None:
    """The canary credentials are reported as leaked, and the admin page lists the event: stage, verdict,
    action and a user reference, with no username or password in the page."""
    submit(browser, site + "/login", username=CANARY_USER, password=CANARY.password)
    assert path(browser, site) == "/password"
    log_out(browser)
    submit(browser, site + "/login", username=ADMIN, password=USERS[ADMIN])
    browser.get(site + "/admin")
    rows = [
        [cell.text for cell in row.find_elements(By.TAG_NAME, "td")]
        for row in browser.find_elements(By.CSS_SELECTOR, "#events tr")
    ]
    canaries = [row for row in rows if "canary" in row]
    assert len(canaries) == 1
    _, stage, verdict, action, user, _, checked, _ = canaries[0]
    assert (stage, verdict, action, checked) == ("login", "exact", "require_change", "not checked")
    assert user and user not in (CANARY_USER, ADMIN)
    for secret in (CANARY_USER, CANARY.password, CAROL, *USERS.values(), CLEAN):
        assert secret not in browser.page_source


@pytest.mark.parametrize("on_error", ["reject", "allow"])
def test_with_the_pair_service_stopped_each_failure_policy_does_what_it_says(
    browser: WebDriver, data: tuple[str, str, str], ranges: str, on_error: str
) -> None:
    """With the pair service stopped, "reject" refuses a sign-up and a log-in it could not check, saying so, and
    "allow" lets both through."""
    with running_server("wsgiref", ["--pairs", data[1], "--key", data[2]], script=SERVE) as stopped:
        pass
    with running_site("--ranges", ranges, "--pairs", stopped.url, "--on-error", on_error) as site:
        submit(browser, site + "/signup", username="erin@site.example", password=CLEAN)
        if on_error == "reject":
            assert path(browser, site) == "/signup"
            assert "could not be checked" in alert(browser)
        else:
            assert path(browser, site) == "/"
            assert browser.find_element(By.ID, "who").text == "Logged in as erin@site.example."
            log_out(browser)
        submit(browser, site + "/login", username=ADMIN, password=USERS[ADMIN])
        if on_error == "reject":
            assert path(browser, site) == "/login"
            assert "could not be checked" in alert(browser)
        else:
            assert browser.find_element(By.ID, "who").text == f"Logged in as {ADMIN}."


@pytest.mark.parametrize("username", ["Carol@Shop.Example", " carol@shop.example", "\uff43arol@shop.example"])
def test_a_username_the_guard_takes_for_an_account_is_that_account(username: str) -> None:
    """Sign-up under another spelling of an account's username (case, spaces, NFKC) is refused as taken: the
    guard's state is the canonical user's, so a second account could otherwise end the first one's forced change
    by changing its own password. (No browser, no service: the refusal comes before any lookup.)"""
    with TestClient(make_app("http://127.0.0.1:9", "http://127.0.0.1:9", on_error="allow")) as client:
        answer = client.post("/signup", data={"username": username, "password": CLEAN}, follow_redirects=False)
        assert answer.status_code == 400 and "That name is taken." in answer.text
        assert client.post("/signup", data={"username": "\u3000", "password": CLEAN}).status_code == 400
