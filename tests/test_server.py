"""The HTTP service, started as a real server on a free loopback port and called over HTTP."""

from __future__ import annotations

import re
import socket
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest
from fakes import KeywordAnnotator

from linker.server import ServerLimits, create_app


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class LiveServer:
    def __init__(self, app: Any) -> None:
        import uvicorn

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> LiveServer:
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("the test server did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


@pytest.fixture(scope="module")
def server(mini_index: Any) -> Iterator[LiveServer]:
    limits = ServerLimits(max_body=20_000, max_batch=8, max_text=200, max_k=20, max_annotate=5_000)
    with LiveServer(create_app(mini_index, annotator=KeywordAnnotator(), limits=limits)) as live:
        yield live


@pytest.fixture()
def client(server: LiveServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=30) as c:
        yield c


def test_lookup_post_and_get(client: httpx.Client) -> None:
    answer = client.post("/lookup", json={"texts": ["Seizures", "nephromegaly"], "k": 3})
    assert answer.status_code == 200
    results = answer.json()["results"]
    assert [r["query"] for r in results] == ["Seizures", "nephromegaly"]
    assert results[0]["candidates"][0] | {"score": 1} == {"concept_id": "HP:0001250", "name": "Seizure",
                                                           "matched_text": "Seizures", "score": 1, "exact": True}
    assert results[1]["candidates"][0]["concept_id"] == "HP:0000105" and len(results[1]["candidates"]) == 3
    single = client.get("/lookup", params={"q": "short stature", "k": 2}).json()
    assert single["candidates"][0]["concept_id"] == "HP:0004322" and len(single["candidates"]) == 2


def test_annotate_offsets_concepts_flags(client: httpx.Client) -> None:
    text = "No seizures; short stature."
    mentions = client.post("/annotate", json={"text": text}).json()["mentions"]
    assert [(m["start"], m["end"], m["concept_id"], m["negated"]) for m in mentions] == [
        (3, 11, "HP:0001250", True), (13, 26, "HP:0004322", False)]
    assert all(text[m["start"]:m["end"]] == m["text"] for m in mentions)
    broken = client.post("/annotate", json={"text": "<<boom>>"})
    assert broken.status_code == 500 and "choked on <<boom>>" in broken.json()["detail"]


def test_concept_card_and_alt_id(client: httpx.Client) -> None:
    card = client.get("/concept/HP:0001250").json()
    assert card["name"] == "Seizure" and "Epileptic seizure" in [s["text"] for s in card["synonyms"]]
    alt = client.get("/concept/HP:0001275").json()
    assert alt["concept_id"] == "HP:0001250" and alt["resolved_from"] == "HP:0001275"
    missing = client.get("/concept/HP:9999999")
    assert missing.status_code == 404 and "HP:9999999" in missing.json()["detail"]


def test_health_and_openapi(client: httpx.Client) -> None:
    health = client.get("/health").json()
    assert health["status"] == "ok" and health["counts"]["concepts"] > 5 and health["model"]
    paths = client.get("/openapi.json").json()["paths"]
    assert {"/lookup", "/annotate", "/concept/{concept_id}", "/health"} <= set(paths)


def test_oversized_and_malformed_requests(client: httpx.Client) -> None:
    too_big = client.post("/annotate", json={"text": "x" * 30_000})
    assert too_big.status_code == 413 and "20000" in too_big.json()["detail"]

    def chunks() -> Iterator[bytes]:  # no Content-Length: the limit applies while the body streams in
        yield b'{"text": "'
        for _ in range(30):
            yield b"y" * 1000
        yield b'"}'

    streamed = client.post("/annotate", content=chunks(), headers={"content-type": "application/json"})
    assert streamed.status_code == 413
    batch = client.post("/lookup", json={"texts": ["a"] * 9})
    assert batch.status_code == 413 and "limit is 8" in batch.json()["detail"]
    long_text = client.post("/lookup", json={"texts": ["z" * 201]})
    assert long_text.status_code == 422 and "at most 200" in long_text.json()["detail"]
    bad_json = client.post("/lookup", content=b'{"texts": ["a",', headers={"content-type": "application/json"})
    assert bad_json.status_code == 400 and "not valid JSON" in bad_json.json()["detail"]
    wrong_shape = client.post("/lookup", json={"texts": "seizure"})
    assert wrong_shape.status_code == 422 and "texts" in wrong_shape.json()["detail"]
    big_k = client.get("/lookup", params={"q": "seizure", "k": 500})
    assert big_k.status_code == 422 and "k" in big_k.json()["detail"]
    empty = client.post("/lookup", json={"texts": []})
    assert empty.status_code == 422
    assert client.get("/health").status_code == 200  # still serving


def test_concurrent_lookups_are_batched_and_correct(server: LiveServer, mini_index: Any) -> None:
    terms = ["Seizures", "Short stature", "Nephromegaly", "Developmental delay", "Fits", "Large kidneys"] * 5
    expected = {t: mini_index.search([t], 3)[0][0].concept_id for t in set(terms)}

    def one(term: str) -> str:
        with httpx.Client(base_url=server.url, timeout=30) as c:
            return c.get("/lookup", params={"q": term, "k": 3}).json()["candidates"][0]["concept_id"]

    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(one, terms))
    assert answers == [expected[t] for t in terms]


def test_server_binds_loopback_by_default() -> None:
    import inspect

    from linker.server import serve

    assert inspect.signature(serve).parameters["host"].default == "127.0.0.1"


def test_annotate_through_the_spacy_pipeline(mini_index: Any) -> None:
    with LiveServer(create_app(mini_index)) as live, httpx.Client(base_url=live.url, timeout=60) as c:
        text = "The boy had no seizures but short stature."
        mentions = c.post("/annotate", json={"text": text}).json()["mentions"]
    found = {m["concept_id"]: m for m in mentions}
    assert found["HP:0001250"]["negated"] is True and found["HP:0004322"]["text"] == "short stature"
    assert all(text[m["start"]:m["end"]] == m["text"] for m in mentions)


@pytest.mark.slow  # a fresh process loads torch and the model (about 10 s)
def test_linker_serve_command(mini_index_dir: Any, tmp_path: Any) -> None:
    import subprocess
    import sys

    port = free_port()
    log = (tmp_path / "serve.log").open("w")
    proc = subprocess.Popen([sys.executable, "-m", "linker", "serve", "--index", str(mini_index_dir), "--port",
                             str(port), "--max-body", "5000"], stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                health = httpx.get(f"http://127.0.0.1:{port}/health", timeout=5)
                break
            except httpx.TransportError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError((tmp_path / "serve.log").read_text()) from None
                time.sleep(0.2)
        assert health.json()["index"] == mini_index_dir.name
        assert httpx.post(f"http://127.0.0.1:{port}/lookup", json={"texts": ["q" * 6000]}).status_code == 413
    finally:
        proc.terminate()
        proc.wait(timeout=20)


class GatedAnnotator(KeywordAnnotator):
    """Holds the model thread inside its first call until released: the queue's state is then known."""

    def __init__(self) -> None:
        super().__init__()
        self.entered, self.release = threading.Event(), threading.Event()
        self.annotated: list[str] = []

    def __call__(self, texts: Any) -> Any:
        self.entered.set()
        assert self.release.wait(timeout=60), "the test never released the model thread"
        self.annotated.extend(texts)
        return super().__call__(texts)


def wait_for(condition: Any, what: str, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.01)


def test_full_queue_answers_503(mini_index: Any) -> None:
    annotator = GatedAnnotator()
    app = create_app(mini_index, annotator=annotator, limits=ServerLimits(max_queue=1))
    worker = app.app.state.worker  # the FastAPI app inside the body-size middleware
    with LiveServer(app) as live, ThreadPoolExecutor(2) as pool:
        def post() -> int:
            with httpx.Client(base_url=live.url, timeout=60) as c:
                return c.post("/annotate", json={"text": "seizures"}).status_code

        running = pool.submit(post)
        assert annotator.entered.wait(timeout=60)  # the first request is being annotated
        waiting = pool.submit(post)
        deadline = time.monotonic() + 60
        while worker.waiting < 1:  # the second request is queued (condition, not a fixed pause)
            assert time.monotonic() < deadline and not waiting.done(), "the second request never queued"
            time.sleep(0.01)
        too_many = post()
        annotator.release.set()
        codes = [running.result(timeout=60), waiting.result(timeout=60), too_many]
    assert codes == [200, 200, 503]


def test_api_docs_work_offline(client: httpx.Client) -> None:
    page = client.get("/docs")
    assert page.status_code == 200
    assets = re.findall(r'(?:src|href)="([^"]+\.(?:js|css))"', page.text)
    assert assets and not [a for a in assets if a.startswith("http")]  # no CDN: everything from this server
    assert all(client.get(a).status_code == 200 for a in assets)


def test_a_lone_surrogate_is_a_clear_422(client: httpx.Client) -> None:
    for path, body in (("/lookup", '{"texts": ["seiz\\ud800ure"], "k": 2}'), ("/annotate", '{"text": "a \\udc00 b"}')):
        answer = client.post(path, content=body, headers={"content-type": "application/json"})
        assert answer.status_code == 422 and "lone surrogate" in answer.text, (path, answer.text)


def test_a_url_whose_escapes_are_not_utf8_is_a_clear_400_not_a_lookup_of_replacement_characters(
        client: httpx.Client) -> None:
    for url in ("/lookup?q=%ED%A0%80&k=2", "/lookup?q=caf%E9", "/concept/HP%FF0001250"):
        answer = client.get(url)
        assert answer.status_code == 400 and "not UTF-8" in answer.json()["detail"], (url, answer.text)
    assert client.get("/lookup?q=caf%C3%A9&k=1").status_code == 200  # the same word, in UTF-8


def test_lookups_answer_while_an_annotation_runs(mini_index: Any) -> None:
    annotator = GatedAnnotator()
    with LiveServer(create_app(mini_index, annotator=annotator)) as live, ThreadPoolExecutor(1) as pool:
        with httpx.Client(base_url=live.url, timeout=60) as c:
            running = pool.submit(c.post, "/annotate", json={"text": "seizures"})
            assert annotator.entered.wait(timeout=60)  # the annotation lane is busy, and stays so
            lookup = c.get("/lookup", params={"q": "Seizure", "k": 1})
            assert lookup.status_code == 200 and lookup.json()["candidates"][0]["concept_id"] == "HP:0001250"
            assert not running.done()
            annotator.release.set()
            assert running.result(timeout=60).status_code == 200


def test_requests_whose_client_left_are_not_computed(mini_index: Any) -> None:
    annotator = GatedAnnotator()
    app = create_app(mini_index, annotator=annotator)
    lane = app.app.state.worker.lanes["annotate"]
    with LiveServer(app) as live, ThreadPoolExecutor(6) as pool:
        first = pool.submit(httpx.post, f"{live.url}/annotate", json={"text": "seizures first"}, timeout=60)
        assert annotator.entered.wait(timeout=60)

        def abandon(i: int) -> None:
            with pytest.raises(httpx.TimeoutException):  # the client gives up and closes its connection
                httpx.post(f"{live.url}/annotate", json={"text": f"seizures {i}"}, timeout=0.5)

        list(pool.map(abandon, range(5)))
        wait_for(lambda: lane.queue.qsize() == 5 and all(job.future.cancelled() for job in list(lane.queue.queue)),
                 "the abandoned requests were not cancelled")
        annotator.release.set()
        assert first.result(timeout=60).status_code == 200
        wait_for(lambda: lane.queue.qsize() == 0 and lane.waiting == 0, "the lane did not drain")
    assert annotator.annotated == ["seizures first"]


def test_a_slow_body_times_out(mini_index: Any) -> None:
    with LiveServer(create_app(mini_index, annotator=KeywordAnnotator(), limits=ServerLimits(read_timeout=0.5))) as live:
        with socket.create_connection(("127.0.0.1", live.port), timeout=30) as sock:
            sock.sendall(b"POST /annotate HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
                         b"content-length: 100\r\n\r\n{\"text\": \"sei")  # and then nothing
            reply = b""
            while chunk := sock.recv(4096):  # the server answers, then closes the connection
                reply += chunk
    text = reply.decode()
    assert text.startswith("HTTP/1.1 408") and "did not arrive within 0.5 s" in text


def test_every_malformed_value_is_a_4xx(client: httpx.Client) -> None:
    too_long = client.post("/annotate", json={"text": "seizures " * 700})
    assert too_long.status_code == 413 and "at most 5000" in too_long.json()["detail"]
    for body in ('{"texts": ["a"], "k": NaN}', '{"texts": ["a"], "k": Infinity}', '{"texts": ["a"], "k": 1.5}',
                 '{"texts": ["a"], "k": "many"}', '{"texts": [null]}', '{"texts": [5]}', '{"texts": ["a"], "k": -1}',
                 '{"texts": ["a"], "k": 99999999999999999999999}'):
        answer = client.post("/lookup", content=body, headers={"content-type": "application/json"})
        assert 400 <= answer.status_code < 500, (body, answer.status_code, answer.text)
    for body in ('{"text": null}', '{"text": 5}', '{"text": ["a"]}', '[]', '"text"'):
        answer = client.post("/annotate", content=body, headers={"content-type": "application/json"})
        assert 400 <= answer.status_code < 500, (body, answer.status_code, answer.text)
    assert client.get("/lookup", params={"q": "seizure", "k": "NaN"}).status_code == 422
    assert client.get("/lookup", params={"q": "", "k": 2}).status_code == 422
    assert client.get("/concept/NOPE:1").status_code == 404
