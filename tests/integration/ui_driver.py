#!/usr/bin/env python3
"""Drives the execd console (/ui) in a real headless Chromium over the DevTools protocol
(python3-websockets), for tests/integration/ui_test.cpp.

  ui_driver.py URL TOKEN FILES_DIR UPLOAD_FILE SCREENSHOT console|terminal|both

Opens URL (the daemon's /ui) and answers the token prompt with TOKEN. `console`: runs
notebook cells (1 + 1; a matplotlib plot; print then 1/0; a sleep that the interrupt
button ends; bash; JavaScript), lists FILES_DIR in the file browser, uploads UPLOAD_FILE
into it through the page's file input, downloads it back through the page's link and
waits for metrics samples. `terminal`: types `echo hi` into the terminal. `both`: all of it. Prints one JSON object of what the DOM
showed (the test asserts on it) and saves a screenshot to SCREENSHOT. Any step that does
not happen in time prints {"error": ...} and exits 1. Chromium is always killed."""
import asyncio
import base64
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request

import websockets

STEP_TIMEOUT = 90  # seconds; a kernel's first start on two loaded cores can take a while


class Failed(Exception):
    pass


class Page:
    def __init__(self, ws):
        self.ws = ws
        self.next_id = 0
        self.pending = {}
        self.reader = asyncio.get_running_loop().create_task(self._read())

    async def _read(self):
        async for raw in self.ws:
            msg = json.loads(raw)
            future = self.pending.pop(msg.get("id"), None)
            if future is not None and not future.done():
                future.set_result(msg)

    async def send(self, method, **params):
        self.next_id += 1
        future = asyncio.get_running_loop().create_future()
        self.pending[self.next_id] = future
        await self.ws.send(json.dumps({"id": self.next_id, "method": method, "params": params}))
        msg = await asyncio.wait_for(future, 30)
        if "error" in msg:
            raise Failed(f"{method}: {msg['error']}")
        return msg["result"]

    async def eval(self, expression):
        r = await self.send("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in r:
            raise Failed(f"evaluating {expression[:80]!r}: {r['exceptionDetails']}")
        return r["result"].get("value")

    async def wait_for(self, what, expression, timeout=STEP_TIMEOUT):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = await self.eval(expression)
            if value:
                return value
            await asyncio.sleep(0.2)
        raise Failed(f"timed out after {timeout}s waiting for {what}")


def start_chromium(profile):
    binary = shutil.which("chromium") or shutil.which("chromium-browser")
    if not binary:
        raise Failed("chromium is not installed (make test installs Debian's chromium)")
    args = [binary, "--headless=new", "--remote-debugging-port=0", f"--user-data-dir={profile}",
            "--no-sandbox", "--disable-gpu", "--no-first-run", "--no-default-browser-check",
            "--disable-dev-shm-usage", "--window-size=1400,1000", "about:blank"]
    return subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)


def devtools_port(profile, browser):
    path = os.path.join(profile, "DevToolsActivePort")
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if browser.poll() is not None:
            raise Failed(f"chromium exited with {browser.returncode} before it listened")
        try:
            with open(path) as f:
                lines = f.read().split("\n")
            if lines[0].strip():
                return int(lines[0])
        except (FileNotFoundError, ValueError):
            pass
        time.sleep(0.1)
    raise Failed("chromium wrote no DevToolsActivePort within 30 s")


def page_socket(port):
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=5) as r:
            pages = [t for t in json.load(r) if t.get("type") == "page"]
        if pages:
            return pages[0]["webSocketDebuggerUrl"]
        time.sleep(0.2)
    raise Failed("chromium has no page target")


# Runs the cell at `index` (0-based) with `code` and waits until it is no longer running.
async def run_cell(page, index, code):
    await page.wait_for(f"cell {index}", f"document.querySelectorAll('.cell').length > {index}")
    await page.eval(f"""(() => {{
        const cell = document.querySelectorAll('.cell')[{index}];
        cell.querySelector('.cell-code').value = {json.dumps(code)};
        cell.querySelector('.cell-run').click();
        return true; }})()""")
    await page.wait_for(f"cell {index} to finish",
                        f"(() => {{ const c = document.querySelectorAll('.cell')[{index}];"
                        f" return c.dataset.state === 'done' || c.dataset.state === 'failed'; }})()")
    return f"document.querySelectorAll('.cell')[{index}].querySelector('.cell-output')"


async def run_cell_in(page, index, language, code):
    await page.wait_for(f"cell {index}", f"document.querySelectorAll('.cell').length > {index}")
    await page.eval(f"document.querySelectorAll('.cell')[{index}].querySelector('.cell-language').value = {json.dumps(language)}, true")
    return await run_cell(page, index, code)


async def drive(url, token, files_dir, upload_file, screenshot, mode):
    out = {}
    profile = tempfile.mkdtemp(prefix="execd-ui-chromium-")
    browser = start_chromium(profile)
    try:
        port = devtools_port(profile, browser)
        async with websockets.connect(page_socket(port), max_size=None, open_timeout=15) as ws:
            page = Page(ws)
            await page.send("Page.enable")
            await page.send("Runtime.enable")
            await page.send("Emulation.setDeviceMetricsOverride", width=1400, height=1000, deviceScaleFactor=1, mobile=False)
            await page.send("Page.navigate", url=url)

            # The token prompt (the daemon has one).
            out["token_prompt"] = await page.wait_for(
                "the token prompt", "document.querySelector('#token-dialog')?.open === true")
            await page.eval(f"""(() => {{ document.querySelector('#token-input').value = {json.dumps(token)};
                document.querySelector('#token-form').requestSubmit(); return true; }})()""")
            await page.wait_for("the page to start", "document.body.dataset.ready === 'true'")
            out["status"] = await page.eval("document.querySelector('#status').textContent")
            out["stored_token"] = await page.eval("sessionStorage.getItem('execd-access-token') === " + json.dumps(token))

            if mode in ("console", "both"):
                await console_steps(page, out, files_dir, upload_file)
            if mode in ("terminal", "both"):
                await terminal_steps(page, out)

            shot = await page.send("Page.captureScreenshot", format="png")
            with open(screenshot, "wb") as f:
                f.write(base64.b64decode(shot["data"]))
            out["screenshot_bytes"] = os.path.getsize(screenshot)
            page.reader.cancel()
    finally:
        try:
            os.killpg(browser.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        browser.wait()
        shutil.rmtree(profile, ignore_errors=True)
    return out


async def console_steps(page, out, files_dir, upload_file):
    # Notebook: 1 + 1.
    cell0 = await run_cell(page, 0, "1 + 1")
    out["cell0_result"] = await page.eval(f"{cell0}.querySelector('.result')?.textContent ?? null")
    out["cell0_count"] = await page.eval("document.querySelectorAll('.cell')[0].querySelector('.cell-count').textContent")

    # A matplotlib plot: an <img> with a PNG that the browser decoded.
    cell1 = await run_cell(page, 1, "import matplotlib.pyplot as plt\n"
                                    "plt.plot([1, 3, 2, 4])\nplt.title('execd')\nplt.show()")
    await page.wait_for("the plot to decode", f"{cell1}.querySelector('img')?.complete === true")
    out["cell1_img_src"] = await page.eval(f"{cell1}.querySelector('img').src.slice(0, 40)")
    out["cell1_img_width"] = await page.eval(f"{cell1}.querySelector('img').naturalWidth")

    # Streamed stdout, then an error with its traceback.
    cell2 = await run_cell(page, 2, "import sys\nprint('streamed out')\nprint('to stderr', file=sys.stderr)\n1 / 0")
    out["cell2_stdout"] = await page.eval(f"{cell2}.querySelector('.stdout')?.textContent ?? null")
    out["cell2_stderr"] = await page.eval(f"{cell2}.querySelector('.stderr')?.textContent ?? null")
    out["cell2_traceback"] = await page.eval(f"{cell2}.querySelector('.traceback')?.textContent ?? null")

    # Interrupt: a cell that would sleep 60 s ends with KeyboardInterrupt when the button is pressed.
    await page.wait_for("cell 3", "document.querySelectorAll('.cell').length > 3")
    await page.eval("""(() => { const c = document.querySelectorAll('.cell')[3];
        c.querySelector('.cell-code').value = "import time\\nprint('sleeping', flush=True)\\ntime.sleep(60)";
        c.querySelector('.cell-run').click(); return true; })()""")
    await page.wait_for("the sleeping cell's output",
                        "document.querySelectorAll('.cell')[3].querySelector('.stdout')?.textContent.includes('sleeping')")
    started = time.monotonic()
    await page.eval("document.querySelectorAll('.cell')[3].querySelector('.cell-interrupt').click(), true")
    await page.wait_for("the interrupted cell to finish", "document.querySelectorAll('.cell')[3].dataset.state !== 'running'", timeout=30)
    out["interrupt_seconds"] = round(time.monotonic() - started, 2)
    out["cell3_traceback"] = await page.eval(
        "document.querySelectorAll('.cell')[3].querySelector('.traceback')?.textContent ?? null")

    # Other languages: a bash context and a JavaScript one (tslab).
    cell4 = await run_cell_in(page, 4, "bash", "cd /tmp && echo $((6 * 7)); pwd")
    out["bash_stdout"] = await page.eval(f"{cell4}.querySelector('.stdout')?.textContent ?? null")
    cell5 = await run_cell_in(page, 5, "javascript", "console.log([1, 2, 3].map(x => x * 2).join(','))")
    out["javascript_stdout"] = await page.eval(f"{cell5}.querySelector('.stdout')?.textContent ?? null")

    # Files: list the directory, upload one file into it with the file input.
    await page.eval(f"""(() => {{ document.querySelector('#files-path').value = {json.dumps(files_dir)};
        document.querySelector('#files-form').requestSubmit(); return true; }})()""")
    await page.wait_for("the listing", f"document.querySelector('#files-table').dataset.path === {json.dumps(files_dir)}")
    out["files_listed"] = await page.eval(
        "[...document.querySelectorAll('#files-table tbody tr td:first-child')].map(td => td.textContent)")
    doc = await page.send("DOM.getDocument")
    node = await page.send("DOM.querySelector", nodeId=doc["root"]["nodeId"], selector="#files-upload")
    await page.send("DOM.setFileInputFiles", files=[upload_file], nodeId=node["nodeId"])
    out["upload_status"] = await page.wait_for(
        "the upload", "(() => { const t = document.querySelector('#files-upload-status').textContent;"
                      " return t.startsWith('uploaded') || t.startsWith('upload failed') ? t : null; })()")
    name = os.path.basename(upload_file)
    await page.wait_for("the uploaded file in the listing",
                        f"[...document.querySelectorAll('#files-table tbody tr td:first-child')]"
                        f".some(td => td.textContent === {json.dumps(name)})")
    out["files_after_upload"] = await page.eval(
        "[...document.querySelectorAll('#files-table tbody tr td:first-child')].map(td => td.textContent)")

    # Download: the uploaded file, through the page's link, into a download directory.
    downloads = tempfile.mkdtemp(prefix="execd-ui-downloads-")
    try:
        await page.send("Page.setDownloadBehavior", behavior="allow", downloadPath=downloads)
        await page.eval(f"[...document.querySelectorAll('#files-table tbody tr')].find(r => r.firstChild.textContent"
                        f" === {json.dumps(name)}).querySelector('td:last-child a').click(), true")
        target = os.path.join(downloads, name)
        deadline = time.monotonic() + 30
        while not (os.path.exists(target) and os.path.getsize(target) == os.path.getsize(upload_file)):
            if time.monotonic() > deadline:
                raise Failed(f"the download of {name} did not arrive in {downloads}: {os.listdir(downloads)}")
            await asyncio.sleep(0.2)
        with open(target, "rb") as a, open(upload_file, "rb") as b:
            out["download_matches"] = a.read() == b.read()
    finally:
        shutil.rmtree(downloads, ignore_errors=True)

    # The metrics feed: samples drawn on the canvas.
    out["metrics_samples"] = int(await page.wait_for(
        "two metrics samples", "Number(document.querySelector('#metrics-chart').dataset.samples || 0) >= 2"
                               " ? document.querySelector('#metrics-chart').dataset.samples : 0", timeout=30))
    out["metrics_text"] = await page.eval("document.querySelector('#metrics-text').textContent")


async def terminal_steps(page, out):
    await page.eval("document.querySelector('#terminal-start').click(), true")
    status = await page.wait_for("the terminal's socket", "document.querySelector('#terminal-status').textContent")
    if not status.startswith("session"):
        raise Failed(f"the terminal did not connect: {status}")
    await page.wait_for("a prompt", "document.querySelector('.xterm-rows')?.textContent.trim().length > 0", timeout=30)
    await page.eval("document.querySelector('.xterm-helper-textarea').focus(), true")
    await page.send("Input.insertText", text="echo hi")
    for kind in ("keyDown", "keyUp"):
        await page.send("Input.dispatchKeyEvent", type=kind, key="Enter", code="Enter",
                        windowsVirtualKeyCode=13, nativeVirtualKeyCode=13,
                        **({"text": "\r"} if kind == "keyDown" else {}))
    out["terminal_lines"] = await page.wait_for(
        "hi on a line of its own",
        "(() => { const rows = [...document.querySelectorAll('.xterm-rows > div')].map(r => r.textContent.trimEnd());"
        " return rows.some(r => r.trim() === 'hi') ? rows.filter(r => r.trim()) : null; })()", timeout=30)


def main():
    url, token, files_dir, upload_file, screenshot = sys.argv[1:6]
    mode = sys.argv[6] if len(sys.argv) > 6 else "console"
    try:
        out = asyncio.run(drive(url, token, files_dir, upload_file, screenshot, mode))
    except (Failed, OSError, asyncio.TimeoutError, websockets.WebSocketException) as e:
        print(json.dumps({"error": f"{type(e).__name__}: {e}"}), flush=True)
        sys.exit(1)
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
