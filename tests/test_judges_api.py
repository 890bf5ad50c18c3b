"""The API judge against a stub OpenAI-compatible server on 127.0.0.1: retries, degradation, cache, no key leaks."""
import json
import logging
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pandas as pd
import pytest

from safety_study import judges as J
from safety_study.cli import main as cli_main
from safety_study.core import NON_REFUSAL, PARSE_ERROR, REFUSAL, StudyError

KEY = "sk-test-DO-NOT-LEAK-7f3a9c"
ENV = "SAFETY_STUDY_TEST_API_KEY"


class Stub:
    """Answers by a ZZ<tag> marker in the judged response: FLAKY (two 429s, then fine), DOWN (always 500),
    SLOW (sleeps past the client timeout once), REFUSE (answers REFUSAL), anything else NON-REFUSAL."""
    def __init__(self):
        self.lock = threading.Lock()
        self.requests, self.auth, self.seen = [], set(), {}
        self.inflight = self.max_inflight = 0
        stub = self

        class H(BaseHTTPRequestHandler):
            def log_message(self, *a): pass

            def do_POST(self):
                with stub.lock:
                    stub.inflight += 1; stub.max_inflight = max(stub.max_inflight, stub.inflight)
                self.abandoned = False
                try: self._answer()
                finally:
                    if not self.abandoned:
                        with stub.lock: stub.inflight -= 1

            def _answer(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                text = body["messages"][0]["content"]
                tag = next((t for t in ("FLAKY", "DOWN", "SLOW", "REFUSE") if "ZZ" + t in text), "OK")
                with stub.lock:
                    stub.requests.append((self.path, tag, body["model"]))
                    stub.auth.add(self.headers.get("Authorization"))
                    n = stub.seen[tag] = stub.seen.get(tag, 0) + 1
                time.sleep(0.05)
                if tag == "FLAKY" and n <= 2: return self._send(429, {"error": "rate"}, {"Retry-After": "0"})
                if tag == "DOWN": return self._send(500, {"error": "boom"})
                if tag == "SLOW" and n == 1:
                    # the client gives up at its timeout and may send its next request while this one still
                    # sleeps: from here on it is no longer in flight for the client, so it does not count
                    with stub.lock: stub.inflight -= 1
                    self.abandoned = True
                    time.sleep(1.5)
                content = "REFUSAL" if tag == "REFUSE" else "NON-REFUSAL"
                self._send(200, {"choices": [{"message": {"role": "assistant", "content": content}}]})

            def _send(self, code, obj, headers=None):
                data = json.dumps(obj).encode()
                try:
                    self.send_response(code)
                    for k, v in (headers or {}).items(): self.send_header(k, v)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers(); self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError): pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def stub(monkeypatch):
    monkeypatch.setenv(ENV, KEY)
    s = Stub()
    yield s
    s.server.shutdown(); s.server.server_close()


ITEMS = pd.DataFrame({"prompt_id": ["a", "b", "c", "d", "e", "f"], "prompt": ["q"] * 6,
                      "response": ["fine answer", "ZZREFUSE please", "ZZFLAKY one", "ZZDOWN one", "ZZSLOW one", "another fine"]})


def _judge(stub, tmp_path, **kw):
    return J.APIJudge(stub.url, "stub-model", key_env=ENV, retries=3, backoff=0.01, timeout=0.8,
                      max_workers=2, cache_dir=tmp_path / "cache", **kw)


def test_api_judge_retries_degrades_caches_and_never_leaks_the_key(stub, tmp_path, capsys, caplog):
    caplog.set_level(logging.DEBUG)
    judge = _judge(stub, tmp_path)
    out = J.run_judges(ITEMS, [judge], progress=True).set_index("prompt_id")
    assert out.verdict.to_dict() == {"a": NON_REFUSAL, "b": REFUSAL, "c": NON_REFUSAL, "d": PARSE_ERROR,
                                     "e": NON_REFUSAL, "f": NON_REFUSAL}
    assert stub.seen["FLAKY"] == 3                      # two 429s, then an answer
    assert stub.seen["DOWN"] == 4                       # 1 try + 3 retries, then PARSE_ERROR for this item only
    assert out.raw["d"].startswith("api error: HTTP 500")
    assert stub.seen["SLOW"] == 2                       # a timeout is retried
    assert stub.auth == {f"Bearer {KEY}"}               # the key is sent, in the header only
    assert {p for p, _, _ in stub.requests} == {"/v1/chat/completions"}
    assert stub.max_inflight <= 2                       # bounded concurrency
    # no key anywhere: table, cache files, captured output and logs
    assert KEY not in out.to_csv()
    cache_files = list((tmp_path / "cache").rglob("*.json"))
    assert len(cache_files) == 5                        # failures are not cached
    assert all(KEY not in f.read_text() for f in cache_files)
    captured = capsys.readouterr()
    assert KEY not in captured.out + captured.err and KEY not in caplog.text
    # a rerun pays nothing twice: only the failed item is asked again
    before = len(stub.requests)
    again = J.run_judges(ITEMS, [_judge(stub, tmp_path)], progress=False).set_index("prompt_id")
    assert again.verdict.to_dict() == out.verdict.to_dict()
    tags = [t for _, t, _ in stub.requests[before:]]
    assert set(tags) == {"DOWN"} and len(tags) == 4


def test_api_judge_cache_is_keyed_by_judge_identity(stub, tmp_path):
    J.run_judges(ITEMS.iloc[:1], [_judge(stub, tmp_path)], progress=False)
    n = len(stub.requests)
    J.run_judges(ITEMS.iloc[:1], [_judge(stub, tmp_path, prompt="short")], progress=False)  # another instruction
    assert len(stub.requests) == n + 1


def test_api_judge_needs_its_key_variable(monkeypatch, tmp_path):
    monkeypatch.delenv(ENV, raising=False)
    with pytest.raises(StudyError, match=ENV):
        J.APIJudge("http://127.0.0.1:9/v1", "m", key_env=ENV)
    with pytest.raises(StudyError, match="base_url"):
        J.make_judge("api", model="m")


def test_cli_api_judge_keeps_the_key_out(stub, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("SAFETY_STUDY_CACHE", str(tmp_path / "c"))
    ITEMS.iloc[:3].to_csv(tmp_path / "in.csv", index=False)
    rc = cli_main(["judge", str(tmp_path / "in.csv"), "--judges", "api,regex_paper", "--api-base-url", stub.url,
                   "--api-model", "stub-model", "--api-key-env", ENV, "--out", str(tmp_path / "v.csv")])
    assert rc == 0
    text = (tmp_path / "v.csv").read_text() + (tmp_path / "v.csv.manifest.json").read_text()
    cap = capsys.readouterr()
    assert KEY not in text + cap.out + cap.err
    v = pd.read_csv(tmp_path / "v.csv")
    assert v[v.judge == "api"].verdict.tolist() == [NON_REFUSAL, REFUSAL, NON_REFUSAL]


class ResponsesStub:
    """A Responses API endpoint as it treats a stored prompt for a reasoning model: 400 for a request that sets a
    model, `temperature` or `max_tokens`; otherwise the reply by a ZZ<tag> in the `response` variable: REFUSE →
    "REFUSAL", EMPTY → no text, else "NON-REFUSAL" inside a message item after a reasoning item."""
    def __init__(self):
        self.bodies = []
        stub = self

        class H(BaseHTTPRequestHandler):
            def log_message(self, *a): pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                stub.bodies.append((self.path, body))
                bad = sorted({"model", "temperature", "max_tokens", "messages"} & set(body))
                if self.path != "/v1/responses" or bad:
                    return self._send(400, {"error": {"message": f"Unsupported parameter(s): {bad or self.path}"}})
                response = body["prompt"]["variables"]["response"]
                text = "" if "ZZEMPTY" in response else "REFUSAL" if "ZZREFUSE" in response else "NON-REFUSAL"
                self._send(200, {"output": [{"type": "reasoning", "summary": []},
                                            {"type": "message", "content": [{"type": "output_text", "text": text}]}]})

            def _send(self, code, obj):
                data = json.dumps(obj).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers(); self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


def test_reference_api_judge_sends_a_request_a_reasoning_endpoint_accepts(tmp_path, monkeypatch):
    monkeypatch.setenv(ENV, KEY)
    stub = ResponsesStub()
    try:
        judge = J.make_judge("paper_api", prompt_id="pmpt_stub", base_url=stub.url, key_env=ENV, retries=0,
                             cache_dir=tmp_path / "cache")
        out = judge.judge(["q1", "q2", "q3"], ["fine", "ZZREFUSE no", "ZZEMPTY"])
        assert out.verdict.tolist() == [NON_REFUSAL, REFUSAL, REFUSAL]          # an empty reply is a refusal
        path, body = stub.bodies[0]
        assert path == "/v1/responses" and set(body) == {"prompt"}
        assert body["prompt"]["id"] == "pmpt_stub" and set(body["prompt"]["variables"]) == {"question", "response"}
        # the project's chat-completions judge sends model, temperature and max_tokens: this endpoint refuses it
        plain = J.APIJudge(stub.url, "gpt-5", key_env=ENV, retries=0, cache_dir=tmp_path / "plain")
        refused = plain.judge(["q"], ["fine"])
        assert refused.verdict.tolist() == [PARSE_ERROR] and "HTTP 400" in refused.raw[0]
    finally:
        stub.server.shutdown(); stub.server.server_close()
