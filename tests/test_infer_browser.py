"""The chat page in a real browser: Debian's chromium, driven by Playwright, against the server on 127.0.0.1.

`playwright install` downloads its own browsers, which a machine without internet cannot do, so the test runs the
system's chromium (`executable_path`) and is skipped, saying how to enable it, where there is none. The answer the
page shows must equal the engine's greedy answer to the same conversation, and the server's error message must
show on the page.
"""

from __future__ import annotations

import shutil

import pytest

from minilm.infer.server import create_app, running_server

CHROMIUM = shutil.which("chromium")
HOW = "install Debian's chromium: apt-get install chromium, and pip install playwright"
if CHROMIUM is None:
    pytest.skip(f"no chromium on this machine: {HOW}", allow_module_level=True)
sync_api = pytest.importorskip("playwright.sync_api", reason=f"playwright is not installed: {HOW}")

from test_infer_server import PAIRS, chat_ids, model, reference, tokenizer  # noqa: E402,F401  (the tiny chat model)

pytestmark = pytest.mark.usefixtures("one_thread")

ASSISTANT_DONE = """() => {
    const answers = document.querySelectorAll('.assistant');
    return answers.length === %d && answers[answers.length - 1].textContent.length > 0
        && !document.querySelector('#send').disabled;
}"""


@pytest.fixture(scope="module")
def page(model, tokenizer):
    """A headless chromium page open on the server's chat page."""
    with running_server(create_app(model, tokenizer)) as url, sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True)
        page = browser.new_page()
        page.goto(f"{url}/")
        yield page
        browser.close()


def ask(page, question: str, answers: int) -> str:
    page.fill("#prompt", question)
    page.click("#send")
    page.wait_for_function(ASSISTANT_DONE % answers, timeout=30_000)
    return page.locator(".assistant").nth(answers - 1).text_content()


def test_the_page_streams_the_answer_and_keeps_the_conversation(page, model, tokenizer):
    page.fill("#temperature", "0")
    page.evaluate("""() => {  // count the changes of the conversation view: a streamed answer makes several
        window.changes = 0;
        const count = (records) => { window.changes += records.length; };
        new MutationObserver(count).observe(document.querySelector('#messages'),
                                            {subtree: true, childList: true, characterData: true});
    }""")
    first = ask(page, PAIRS[0][0], 1)
    messages = [{"role": "user", "content": PAIRS[0][0]}]
    ids = chat_ids(tokenizer, messages)  # no max tokens on the page: the server lets the answer fill the context
    expected = reference(model, tokenizer, ids, temperature=0, max_tokens=model.config.context - len(ids))
    assert first == expected.text and first.startswith("The cat is called Tom")
    assert page.evaluate("window.changes") > 5  # shown piece by piece as it came
    assert page.locator(".user").all_text_contents() == [PAIRS[0][0]]
    assert page.input_value("#prompt") == ""

    second = ask(page, PAIRS[1][0], 2)  # the whole conversation goes with the second question
    messages += [{"role": "assistant", "content": first}, {"role": "user", "content": PAIRS[1][0]}]
    ids = chat_ids(tokenizer, messages)
    assert second == reference(model, tokenizer, ids, temperature=0, max_tokens=model.config.context - len(ids)).text


def test_the_page_shows_the_servers_error_and_can_send_again(page):
    page.click("#reset")
    assert page.locator(".message").count() == 0
    page.fill("#max-tokens", "-3")
    page.fill("#prompt", PAIRS[2][0])
    page.click("#send")
    page.wait_for_selector(".error", timeout=30_000)
    assert page.locator(".error").text_content() == "error 400: max_tokens=-3 must be at least 1"
    assert page.locator(".assistant").count() == 0 and not page.is_disabled("#send")
    assert page.input_value("#prompt") == PAIRS[2][0]  # the question is back in the box, to send again
    page.fill("#max-tokens", "")
    page.click("#send")
    page.wait_for_function(ASSISTANT_DONE % 1, timeout=30_000)
    assert page.locator(".user").all_text_contents() == [PAIRS[2][0], PAIRS[2][0]]
