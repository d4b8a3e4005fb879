"""Run every bad or odd input that issue 25 names through the real `flowrl` command and write what it answers
into docs/reliability.md (between the `issue25-cases` markers): command, exit code, wall time, first line.

Each case runs in a fresh process with a 120 s limit (a hang would show as a timeout), outside the repository
(a temporary folder holds every file it needs); the table also says whether a traceback appeared and whether
a special file survived. Cases that need a trained model or the served model are covered by the tests named
in the table beside it, not here.

    .venv/bin/python scripts/issue25_cases.py
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import stat
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DOC = REPO / "docs" / "reliability.md"
START, END = "<!-- issue25-cases:start -->", "<!-- issue25-cases:end -->"
FIXTURE = REPO / "tests/fixtures/object_info_user.json"
T2I = {
    "1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "juggernautXL_v10.safetensors"}},
    "2": {"class_type": "CLIPTextEncode", "inputs": {"clip": ["1", 1], "text": "a fox"}},
    "3": {"class_type": "CLIPTextEncode", "inputs": {"clip": ["1", 1], "text": "blurry"}},
    "4": {"class_type": "EmptyLatentImage", "inputs": {"width": 1024, "height": 1024, "batch_size": 1}},
    "5": {
        "class_type": "KSampler",
        "inputs": {
            "model": ["1", 0],
            "positive": ["2", 0],
            "negative": ["3", 0],
            "latent_image": ["4", 0],
            "seed": 1,
            "steps": 25,
            "cfg": 7.0,
            "sampler_name": "euler",
            "scheduler": "normal",
            "denoise": 1.0,
        },
    },
    "6": {"class_type": "VAEDecode", "inputs": {"samples": ["5", 0], "vae": ["1", 2]}},
    "7": {"class_type": "SaveImage", "inputs": {"images": ["6", 0], "filename_prefix": "x"}},
}


@contextlib.contextmanager
def http(handler_get):
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 (http.server API)
            handler_get(self)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def redirect(h):
    h.send_response(302)
    h.send_header("Location", "http://127.0.0.1:8188/login")
    h.send_header("Content-Length", "0")
    h.end_headers()


def trickle(h):
    h.send_response(200)
    h.send_header("Content-Length", "100000")
    h.end_headers()
    with contextlib.suppress(OSError):
        for _ in range(600):
            h.wfile.write(b" ")
            h.wfile.flush()
            time.sleep(0.1)


def files(tmp: Path) -> dict[str, str]:
    """Every input file the cases use, written into `tmp`."""

    def put(name: str, data) -> str:
        path = tmp / name
        path.write_bytes(
            data if isinstance(data, bytes) else (data if isinstance(data, str) else json.dumps(data)).encode()
        )
        return str(path)

    info = json.loads(FIXTURE.read_text())
    old = {k: v for k, v in info.items() if k != "FreeU_V2"}
    flow = put("flow.json", T2I)
    out = {"flow": flow, "info": str(FIXTURE)}
    out["list_dump"] = put("list.json", list(info.values())[:2])
    out["null_input"] = put("null_input.json", {**info, "KSampler": {**info["KSampler"], "input": None}})
    out["str_output"] = put("str_output.json", {**info, "VAEDecode": {**info["VAEDecode"], "output": "IMAGE"}})
    out["system_stats"] = put(
        "system_stats.json", {"system": {"os": "posix", "comfyui_version": "0.3.40"}, "devices": []}
    )
    out["html"] = put("page.html", "<!DOCTYPE html><html><body>Sign in</body></html>")
    out["bom"] = put("bom.json", b"\xef\xbb\xbf" + FIXTURE.read_bytes())
    out["old_comfy"] = put("old.json", old)
    out["freeu_flow"] = put(
        "freeu.json",
        {
            **T2I,
            "8": {"class_type": "FreeU_V2", "inputs": {"model": ["1", 0], "b1": 1.3, "b2": 1.4, "s1": 0.9, "s2": 0.2}},
        },
    )
    ui_node = lambda nid, typ, ins, outs: {
        "id": nid,
        "type": typ,
        "mode": 0,
        "widgets_values": [],  # noqa: E731
        "inputs": [{"name": "", "type": "*", "link": lk} for lk in ins],
        "outputs": [{"name": "*", "type": "*", "links": lo} for lo in outs],
    }
    ckpt = {
        "id": 1,
        "type": "CheckpointLoaderSimple",
        "mode": 0,
        "widgets_values": ["a.safetensors"],
        "inputs": [],
        "outputs": [{"name": "MODEL", "type": "MODEL", "links": []}],
    }
    sampler_in = {
        "id": 3,
        "type": "FreeU",
        "mode": 0,
        "widgets_values": [1.1, 1.2, 0.9, 0.2],
        "inputs": [{"name": "model", "type": "MODEL", "link": 21}],
        "outputs": [{"name": "MODEL", "type": "MODEL", "links": []}],
    }
    out["reroute_loop"] = put(
        "reroute_loop.json",
        {
            "nodes": [ckpt, ui_node(20, "Reroute", [22], [[21, 23]]), ui_node(21, "Reroute", [23], [[22]]), sampler_in],
            "links": [[21, 20, 0, 3, 0, "MODEL"], [22, 21, 0, 20, 0, "*"], [23, 20, 0, 21, 0, "*"]],
        },
    )
    out["ui_nodes_dict"] = put("ui_dict.json", {"last_node_id": 1, "links": [], "nodes": {"1": ckpt}, "version": 0.4})
    encoded = subprocess.run(
        [sys.executable, "-m", "flowrl.cli.main", "flow", "encode", flow], capture_output=True, text=True
    ).stdout
    out["crlf"] = put("crlf.txt", encoded.replace("\n", "\r\n"))
    out["bad_slot"] = put(
        "bad_slot.json", {**T2I, "6": {"class_type": "VAEDecode", "inputs": {"samples": ["5", 3], "vae": ["1", 2]}}}
    )
    out["empty_class"] = put("empty_class.json", {**T2I, "8": {"class_type": "", "inputs": {}}})
    from bench.ui_export_scale import big_graph

    out["big"] = put("big.json", json.dumps(big_graph(40_000), separators=(",", ":")))
    import yaml

    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["profiles"]["mine"] = {"policy": {"temperature": 0.7}}
    out["params_custom"] = put("params_custom.yaml", yaml.safe_dump(params))
    params["profiles"]["cpu"] = {**(params["profiles"].get("cpu") or {}), "policy": {"temperature": -1}}
    out["params_bad_cpu"] = put("params_bad_cpu.yaml", yaml.safe_dump(params))
    (tmp / "adir").mkdir()
    out["dir"] = str(tmp / "adir")
    os.mkfifo(tmp / "fifo")
    out["fifo"] = str(tmp / "fifo")
    (tmp / "target.json").write_text("old")
    (tmp / "link.json").symlink_to(tmp / "target.json")
    out["link"], out["target"] = str(tmp / "link.json"), str(tmp / "target.json")
    (tmp / "private.json").write_text("old")
    (tmp / "private.json").chmod(0o600)
    out["private"] = str(tmp / "private.json")
    out["under_file"] = flow + "/out.json"
    out["missing_dir"] = str(tmp / "no_such_dir" / "out.json")
    out["empty_dir"] = str(tmp / "empty")
    (tmp / "empty").mkdir()
    return out


def cases(f: dict[str, str], redirect_url: str, trickle_url: str) -> list[tuple[str, str, list[str]]]:
    """(point of the issue, what is tried, argv after `flowrl`; ["python", "-m", "flows", ...] for the flows entry point)."""
    gen = ["generate", "a red fox"]
    to_ui = ["flow", "to-ui", f["flow"], "-o"]
    validate = ["flow", "validate", f["flow"], "--object-info"]
    return [
        ("2", "help", ["--help"]),
        ("2, 7", "`--gamma 100.0001`", [*gen, "--gamma", "100.0001"]),
        ("2, 7", "`--submit` with port 99999", [*gen, "--submit", "http://127.0.0.1:99999"]),
        ("2", "empty prompt", ["generate", " "]),
        ("2", "19,000-character prompt, no model here", ["generate", "x " * 9500, "--model", f["dir"]]),
        ("3", "`-o` a directory", [*to_ui, f["dir"]]),
        ("3", "`-o` a path under a file", [*to_ui, f["under_file"]]),
        ("3", "`-o` into a missing folder", [*to_ui, f["missing_dir"]]),
        ("3", "`-o` into an unwritable folder", [*to_ui, "/proc/self/out.json"]),
        ("3", "`-o` a FIFO nobody reads", [*to_ui, f["fifo"]]),
        ("3", "`-o` a symlink", [*to_ui, f["link"]]),
        ("3", "`-o` an existing 0600 file", [*to_ui, f["private"]]),
        ("3", "`-o -`", [*to_ui, "-"]),
        ("3", "`-o /dev/null`", [*to_ui, "/dev/null"]),
        ("3", "`--root` a file", ["pipeline", "dvc-yaml", "--root", f["flow"]]),
        ("4", "dump is a list", [*validate, f["list_dump"]]),
        ("4", "`input: null`", [*validate, f["null_input"]]),
        ("4", "a string `output`", [*validate, f["str_output"]]),
        ("4", "a `/system_stats` answer", [*validate, f["system_stats"]]),
        ("4", "an HTML page", [*validate, f["html"]]),
        ("4", "a BOM", [*validate, f["bom"]]),
        ("4", "a redirect", [*validate, redirect_url]),
        ("4", "`http:/` typo", [*validate, "http:/127.0.0.1:8188"]),
        ("4", "`htp://` typo", [*validate, "htp://127.0.0.1:8188"]),
        ("4", "`http://` alone", [*validate, "http://"]),
        ("4", "empty argument", [*validate, ""]),
        ("4", "a server that trickles bytes (30 s deadline)", [*validate, trickle_url]),
        ("4", "a core node the install lacks", ["flow", "validate", f["freeu_flow"], "--object-info", f["old_comfy"]]),
        ("5", "40,000 nodes, 4.5 MiB", ["flow", "to-ui", f["big"], "-o", os.devnull]),
        ("5", "link to an output slot that does not exist", ["flow", "to-ui", f["bad_slot"]]),
        ("5", "empty `class_type`", ["flow", "to-ui", f["empty_class"]]),
        ("7", "Reroute loop", ["flow", "validate", f["reroute_loop"]]),
        ("7", "UI file whose `nodes` is a dict", ["flow", "validate", f["ui_nodes_dict"]]),
        ("7", "CRLF encoded flow", ["flow", "decode", f["crlf"]]),
        (
            "7",
            "custom profile `mine` (then a bad --model)",
            [*gen, "--params", f["params_custom"], "--profile", "mine", "--model", f["dir"]],
        ),
        (
            "7",
            "bad value in `profiles.cpu`",
            [*gen, "--params", f["params_bad_cpu"], "--profile", "cpu", "--model", f["dir"]],
        ),
        ("7", "`python -m flows prompts` without params.yaml", ["python", "-m", "flows", "prompts"]),
        (
            "1",
            "`--checkpoint-family` without `--object-info`",
            [*gen, "--checkpoint-family", "house_blend.safetensors=sdxl"],
        ),
        (
            "1",
            "`--checkpoint-family` naming a file not installed",
            [*gen, "--object-info", f["info"], "--checkpoint-family", "house_blend=sdxl", "--model", f["dir"]],
        ),
        (
            "1",
            "`--checkpoint-family` with an unknown family",
            [
                *gen,
                "--object-info",
                f["info"],
                "--checkpoint-family",
                "juggernautXL_v10.safetensors=sd3",
                "--model",
                f["dir"],
            ],
        ),
    ]


def run(argv: list[str], cwd: Path) -> tuple[int | str, float, str, str]:
    cmd = [sys.executable, *argv[1:]] if argv[0] == "python" else [sys.executable, "-m", "flowrl.cli.main", *argv]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join([str(REPO / "src"), str(REPO)])}
    t0 = time.monotonic()
    try:
        proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=120, env=env)
    except subprocess.TimeoutExpired:
        return "timeout", 120.0, "", "HANG (killed after 120 s)"
    return proc.returncode, time.monotonic() - t0, proc.stdout, proc.stderr


def answer(code, stdout: str, stderr: str, f: dict[str, str]) -> str:
    lines = [
        ln
        for ln in (stderr if code != 1 else stdout + stderr).splitlines()
        if ln.strip() and not ln.startswith(("note:", "wrote "))
    ]
    if code == 0:
        shown = stdout.strip().splitlines()[0] if stdout.strip() else (stderr.strip().splitlines() or [""])[0]
        return shown[:160]
    text = lines[0] if lines else (stdout.strip().splitlines() or [""])[0]
    if (text.endswith(":") or code == 1) and len(
        lines
    ) > 1:  # a list follows (params errors, validate reports): its first item
        text += " " + lines[1].strip()
    return text[:240]


def short(argv: list[str], tmp: Path) -> str:
    parts = []
    for a in argv:
        a = a.replace(str(tmp) + "/", "").replace(str(REPO) + "/", "")
        a = a if len(a) <= 40 else a[:20] + "…"
        parts.append(a if a and " " not in a else json.dumps(a, ensure_ascii=False))
    return ("" if parts[0] == "python" else "flowrl ") + " ".join(parts)


def main() -> None:
    rows = []
    with tempfile.TemporaryDirectory() as tmp_name, http(redirect) as redirect_url, http(trickle) as trickle_url:
        tmp = Path(tmp_name)
        f = files(tmp)
        for point, what, argv in cases(f, redirect_url, trickle_url):
            code, seconds, out, err = run(argv, tmp / "empty")
            said = (
                answer(code, out, err, f).replace(tmp_name + "/", "").replace(str(REPO) + "/", "").replace("|", "\\|")
            )
            said = re.sub(
                r"127\.0\.0\.1:\d{4,5}(?!\d)",
                lambda m: m.group(0) if m.group(0).endswith((":8188", ":99999")) else "127.0.0.1:PORT",
                said,
            )
            traceback = "Traceback" in err
            rows.append(
                (
                    point,
                    what,
                    short(argv, tmp).replace(redirect_url, "URL").replace(trickle_url, "URL"),
                    code,
                    seconds,
                    said,
                    traceback,
                )
            )
            print(f"{code!s:>7} {seconds:6.2f}s  {what}: {said[:120]}")
        special = {
            "FIFO still a FIFO": stat.S_ISFIFO(os.stat(f["fifo"]).st_mode),
            "/dev/null still a device": stat.S_ISCHR(os.stat("/dev/null").st_mode),
            "symlink still a link, target written": Path(f["link"]).is_symlink()
            and Path(f["target"]).read_text() != "old",
            "0600 file still 0600": stat.S_IMODE(os.stat(f["private"]).st_mode) == 0o600,
        }
    table = ["| point | input | command | exit | wall | answer |", "|---|---|---|---|---|---|"]
    for point, what, cmd, code, seconds, said, traceback in rows:
        mark = " **(traceback)**" if traceback else ""
        table.append(f"| {point} | {what} | `{cmd}` | {code} | {seconds:.2f} s | {said}{mark} |")
    n_tb, n_hang = sum(r[6] for r in rows), sum(r[3] == "timeout" for r in rows)
    summary = f"{len(rows)} cases, {n_tb} tracebacks, {n_hang} hangs; special files: " + ", ".join(
        f"{k}: {'yes' if v else '**NO**'}" for k, v in special.items()
    )
    block = "\n".join([START, "", summary + ".", "", *table, "", END])
    doc = DOC.read_text()
    doc = (
        doc[: doc.index(START)] + block + doc[doc.index(END) + len(END) :]
        if START in doc
        else doc.rstrip() + "\n\n" + block + "\n"
    )
    DOC.write_text(doc)
    print(summary)


if __name__ == "__main__":
    main()
