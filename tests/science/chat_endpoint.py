"""A fake OpenAI-compatible chat endpoint on 127.0.0.1 (random port) for the LLM adapter's tests.

Subclasses say what to answer: `answer(messages)` gives (status, content) or (status, content, headers).
Every request's messages are recorded in `calls`; `respond` may be overridden to record more.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class ChatEndpoint:
    def __init__(self):
        self.calls: list = []
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep the test output clean
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                status, content, *rest = endpoint.respond(self, body)
                headers = rest[0] if rest else {}
                if status != 200:
                    self.send_response(status)
                    for key, value in headers.items():
                        self.send_header(key, value)
                    self.end_headers()
                    self.wfile.write(b'{"error": "try again"}')
                    return
                payload = json.dumps({"choices": [{"message": {"role": "assistant", "content": content}}]}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def respond(self, request: BaseHTTPRequestHandler, body: dict) -> tuple:
        self.calls.append(body["messages"])
        return self.answer(body["messages"])

    def answer(self, messages: list[dict]) -> tuple:
        raise NotImplementedError

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()
