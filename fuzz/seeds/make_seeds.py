#!/usr/bin/env python3
"""Writes the seed corpora under fuzz/corpus/<target>/ from real-shaped inputs.

Run from fuzz/: python3 seeds/make_seeds.py. Split-format targets (chunked,
framer, response_head) take a header first: one byte n, then n piece lengths
(see src/lib.rs); b"\\x00" means "no split".
"""
import json
import os
import shutil

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def pod(name, rv, ns="default"):
    return {
        "kind": "Pod",
        "apiVersion": "v1",
        "metadata": {
            "name": name,
            "namespace": ns,
            "uid": "6f1c3e0a-5b0e-4c8e-9d6a-1f2e3d4c5b6a",
            "resourceVersion": rv,
            "creationTimestamp": "2026-11-22T05:00:00Z",
            "labels": {"app": "web", "tier": "frontend"},
            "annotations": {"kwatchd.io/note": "caf\u00e9 \u2713"},
        },
        "spec": {
            "containers": [
                {"name": "web", "image": "nginx:1.27", "ports": [{"containerPort": 80}]}
            ],
            "nodeName": "node-1",
        },
        "status": {"phase": "Running", "podIP": "10.0.0.7"},
    }


def event(t, obj):
    return json.dumps({"type": t, "object": obj}, separators=(",", ":"), ensure_ascii=False).encode()


def chunk(data, ext=b""):
    return b"%x%s\r\n%s\r\n" % (len(data), ext, data)


ADDED = event("ADDED", pod("web-0", "1001"))
MODIFIED = event("MODIFIED", pod("web-0", "1002"))
DELETED = event("DELETED", pod("web-0", "1003"))
BOOKMARK = event("BOOKMARK", {"kind": "Pod", "apiVersion": "v1",
                              "metadata": {"resourceVersion": "1004",
                                           "annotations": {"k8s.io/initial-events-end": "true"}}})
ERROR = event("ERROR", {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                        "message": "too old resource version: 1 (1001)", "reason": "Expired",
                        "code": 410})

# One chunk per event line, as the API server writes them; one with an extension.
STREAM = (chunk(ADDED + b"\n") + chunk(MODIFIED + b"\n", b";ext=1") + chunk(BOOKMARK + b"\n")
          + chunk(DELETED + b"\n", b" ;name=\"quoted value\"") + b"0\r\n\r\n")
# An event split across chunks, a bare-LF chunk, upper-case hex, trailers.
SPLIT_STREAM = (chunk(ADDED[:40]) + chunk(ADDED[40:] + b"\n")
                + b"%X\n%s\n" % (len(ERROR) + 1, ERROR + b"\n")
                + b"0;last\r\nX-Trailer: 1\r\n\r\n")

LIST = json.dumps({
    "kind": "PodList", "apiVersion": "v1",
    "metadata": {"resourceVersion": "1000", "continue": "eyJ2IjoibWV0YS5rOHMuaW8vdjEifQ"},
    "items": [pod("web-0", "990"), pod("db-0", "995", "data")],
}, separators=(",", ":")).encode()
LAST_PAGE = json.dumps({"kind": "PodList", "apiVersion": "v1",
                        "metadata": {"resourceVersion": "1000"}, "items": []}).encode()

HEAD_CHUNKED = (b"HTTP/1.1 200 OK\r\nAudit-Id: 3f1e\r\nCache-Control: no-cache, private\r\n"
                b"Content-Type: application/json\r\nDate: Sun, 22 Nov 2026 05:00:00 GMT\r\n"
                b"Transfer-Encoding: chunked\r\n\r\n")
BODY_410 = json.dumps({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                       "reason": "Expired", "code": 410}).encode()
HEAD_LENGTH = (b"HTTP/1.1 410 Gone\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n"
               % len(BODY_410))


def cuts(*lengths):
    return bytes([len(lengths), *lengths])


NO_SPLIT = b"\x00"

CORPORA = {
    "chunked": {
        "watch-stream": NO_SPLIT + STREAM,
        "watch-stream-cut": cuts(1, 2, 3, 5, 8, 13, 21) + STREAM,
        "split-event-trailers": NO_SPLIT + SPLIT_STREAM,
        "split-event-trailers-cut": cuts(7, 0, 200, 1) + SPLIT_STREAM,
        "small": NO_SPLIT + b"4\r\nWiki\r\n5;a=b\r\npedia\r\n0\r\n\r\n",
    },
    "framer": {
        "short-lines": NO_SPLIT + b'{"type":"ADDED"}\n{"type":"MODIFIED"}\r\n\n\nlast',
        "short-lines-cut": cuts(3, 17, 1, 0) + b'{"type":"ADDED"}\n{"type":"MODIFIED"}\r\n\n\nlast',
        "exact-limit": NO_SPLIT + b"a" * 64 + b"\r\n" + b"b" * 64 + b"\n" + b"c" * 64 + b"\r",
        "over-limit": cuts(30, 30) + b"x" * 65 + b"\n",
        "watch-lines": NO_SPLIT + ADDED + b"\n" + DELETED + b"\n",
    },
    "response_head": {
        "chunked-watch": NO_SPLIT + HEAD_CHUNKED + STREAM,
        "chunked-watch-cut": cuts(10, 90, 3, 1, 1, 60) + HEAD_CHUNKED + STREAM,
        "content-length-410": NO_SPLIT + HEAD_LENGTH + BODY_410,
        "continue-then-lines": cuts(20, 6) + b"HTTP/1.1 100 Continue\r\n\r\n"
        + b"HTTP/1.1 200 OK\r\nContent-Length: 12\r\n\r\nline1\nline2\nHTTP/1.1 204 No Content\r\n\r\n",
        "until-close-http10": NO_SPLIT + b"HTTP/1.0 200 OK\nContent-Type: text/plain\n\nbody\nmore",
        "small-chunked": NO_SPLIT + b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        + b"6\r\nhello\n\r\n0\r\n\r\n",
    },
    "list_scan": {
        "list-page": NO_SPLIT + LIST,
        "list-last-page-cut": cuts(3, 40, 1, 1, 17) + LAST_PAGE,
        "items-null": NO_SPLIT + b'{"kind":"PodList","metadata":{"resourceVersion":"1"},"items":null}',
        "escapes-and-nesting": cuts(9, 9, 9) + b'{"kind":"PodList","items":[{"a":"]}\\"","b":[[{}],-1.5e3,true,null]}],"x":{"y":[1]}}',
    },
    "watch_event": {
        "added-pod": ADDED,
        "deleted-pod": DELETED,
        "bookmark": BOOKMARK,
        "error-410": ERROR,
        "list-page": LIST,
        "list-last-page": LAST_PAGE,
    },
}


def main():
    for target, seeds in CORPORA.items():
        d = os.path.join(ROOT, "corpus", target)
        os.makedirs(d, exist_ok=True)
        for name, data in seeds.items():
            with open(os.path.join(d, name), "wb") as f:
                f.write(data)
    d = os.path.join(ROOT, "corpus", "config")
    os.makedirs(d, exist_ok=True)
    shutil.copy(os.path.join(ROOT, "..", "config", "kwatchd.toml"), os.path.join(d, "kwatchd.toml"))
    shutil.copy(os.path.join(ROOT, "..", "config", "demo.toml"), os.path.join(d, "demo.toml"))
    with open(os.path.join(d, "minimal.toml"), "w") as f:
        f.write('[clusters.local]\nserver = "https://127.0.0.1:6443"\n\n'
                '[[watch]]\nname = "pods"\ncluster = "local"\napi_version = "v1"\n'
                'resource = "pods"\nsinks = ["out"]\n\n[sinks.out]\ntype = "stdout"\n')


if __name__ == "__main__":
    main()
