// The execd browser console: a notebook, a terminal, a file browser and the metrics feed,
// on the public API only. URLs are relative to the page's directory (/ui/ -> the API at
// its parent), so the console also works behind a proxy's path prefix.
'use strict';

const API_BASE = new URL('..', location.href);
const TOKEN_KEY = 'execd-access-token';
let token = sessionStorage.getItem(TOKEN_KEY) || '';

const $ = (sel, root = document) => root.querySelector(sel);
const el = (tag, props = {}, text) => {
  const e = Object.assign(document.createElement(tag), props);
  if (text !== undefined) e.textContent = text;
  return e;
};
const apiUrl = (path) => new URL(path.replace(/^\//, ''), API_BASE).toString();
const authHeaders = (extra = {}) => (token ? { ...extra, 'X-EXECD-ACCESS-TOKEN': token } : { ...extra });
const stripAnsi = (s) => s.replace(/\x1b\[[0-9;?]*[ -\/]*[@-~]/g, '');

async function api(path, options = {}) {
  const res = await fetch(apiUrl(path), { ...options, headers: authHeaders(options.headers) });
  if (res.status === 401) {
    await askForToken('The access token was refused.');
    return fetch(apiUrl(path), { ...options, headers: authHeaders(options.headers) });
  }
  return res;
}

const postJson = (path, body) =>
  api(path, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(body) });

async function errorText(res) {
  const text = await res.text();
  try {
    const j = JSON.parse(text);
    if (j.code) return `${j.code}: ${j.message}`;
  } catch (_) { /* not JSON */ }
  return `HTTP ${res.status} ${text.slice(0, 200)}`;
}

// Server-Sent Events from a fetch() response (EventSource cannot send the token header).
// Calls onEvent with each parsed `data:` JSON until the stream ends or onEvent says false.
async function readSse(res, onEvent) {
  const reader = res.body.getReader();
  const decoder = new TextDecoder();
  let buffer = '';
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += decoder.decode(value, { stream: true });
    let end;
    while ((end = buffer.indexOf('\n\n')) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      const data = block.split('\n').filter((l) => l.startsWith('data:')).map((l) => l.slice(5).replace(/^ /, '')).join('\n');
      if (!data) continue;
      let event;
      try { event = JSON.parse(data); } catch (_) { continue; }
      if (onEvent(event) === false) { reader.cancel(); return; }
    }
  }
}

// ---- access token -------------------------------------------------------------------

let tokenPrompt = null;
function askForToken(message = '') {
  if (tokenPrompt) return tokenPrompt;
  tokenPrompt = new Promise((resolve) => {
    const dialog = $('#token-dialog');
    $('#token-error').textContent = message;
    $('#token-form').onsubmit = async (e) => {
      e.preventDefault();
      const candidate = $('#token-input').value;
      const res = await fetch(apiUrl('/ping'), { headers: { 'X-EXECD-ACCESS-TOKEN': candidate } });
      if (res.status === 401) { $('#token-error').textContent = 'That token was refused.'; return; }
      token = candidate;
      sessionStorage.setItem(TOKEN_KEY, token);
      dialog.close();
      tokenPrompt = null;
      resolve();
    };
    if (!dialog.open) dialog.showModal();
  });
  return tokenPrompt;
}

// ---- notebook -----------------------------------------------------------------------

const contexts = {}; // language -> code context id (one per language, created on first use)

async function contextFor(language) {
  if (contexts[language]) return contexts[language];
  const res = await postJson('/code/context', { language });
  if (!res.ok) throw new Error(await errorText(res));
  contexts[language] = (await res.json()).id;
  return contexts[language];
}

function addCell(code = '', language = 'python') {
  const cell = $('#cell-template').content.firstElementChild.cloneNode(true);
  const textarea = $('.cell-code', cell);
  textarea.value = code;
  $('.cell-language', cell).value = language;
  $('.cell-run', cell).onclick = () => runCell(cell);
  textarea.addEventListener('keydown', (e) => {
    if (e.key === 'Enter' && e.shiftKey) { e.preventDefault(); runCell(cell); }
  });
  textarea.addEventListener('input', () => { textarea.rows = Math.max(3, textarea.value.split('\n').length); });
  $('#cells').appendChild(cell);
  return cell;
}

// Consecutive output of one stream goes into one <pre>.
function appendStream(output, kind, text) {
  let last = output.lastElementChild;
  if (!last || !last.classList.contains(kind)) last = output.appendChild(el('pre', { className: kind }));
  last.textContent += text;
}

// Kernels stream chunks that carry their own newlines; bash contexts send one event per
// line, without it.
function renderEvent(output, cell, ev, lineBased) {
  const text = (t) => (lineBased && !t.endsWith('\n') ? `${t}\n` : t);
  switch (ev.type) {
    case 'stdout': appendStream(output, 'stdout', text(ev.text)); break;
    case 'stderr': appendStream(output, 'stderr', text(ev.text)); break;
    case 'execution_count': $('.cell-count', cell).textContent = `[${ev.execution_count}]`; break;
    case 'result': {
      const r = ev.results || {};
      if (r['image/png']) {
        output.appendChild(el('img', { src: `data:image/png;base64,${r['image/png']}`, alt: r.text || 'image/png' }));
      } else if (r['image/svg+xml']) {
        output.appendChild(el('img', { src: `data:image/svg+xml;charset=utf-8,${encodeURIComponent(r['image/svg+xml'])}` }));
      } else if (r.text !== undefined) {
        output.appendChild(el('pre', { className: 'result' }, r.text));
      } else if (Object.keys(r).length) {
        output.appendChild(el('pre', { className: 'result' }, JSON.stringify(r)));
      }
      break;
    }
    case 'error': {
      const e = ev.error || {};
      const trace = (e.traceback || []).map(stripAnsi).join('\n');
      output.appendChild(el('pre', { className: 'traceback' }, trace || `${e.ename}: ${e.evalue}`));
      break;
    }
    case 'execution_complete':
      cell.dataset.state = 'done';
      $('.cell-count', cell).textContent += ` ${ev.execution_time ?? 0} ms`;
      break;
    default: break;
  }
}

async function runCell(cell) {
  const output = $('.cell-output', cell);
  const language = $('.cell-language', cell).value;
  const run = $('.cell-run', cell);
  const interrupt = $('.cell-interrupt', cell);
  output.textContent = '';
  $('.cell-count', cell).textContent = '';
  const textarea = $('.cell-code', cell);
  textarea.rows = Math.max(3, textarea.value.split('\n').length);
  cell.dataset.state = 'running';
  run.disabled = true;
  try {
    for (let attempt = 0; attempt < 2; ++attempt) {
      const id = await contextFor(language);
      interrupt.disabled = false;
      interrupt.onclick = () => api(`/code?id=${encodeURIComponent(id)}`, { method: 'DELETE' });
      const res = await postJson('/code', { code: $('.cell-code', cell).value, context: { id, language } });
      if (res.status === 404 && attempt === 0) { delete contexts[language]; continue; } // context gone: a fresh one
      if (!res.ok) throw new Error(await errorText(res));
      await readSse(res, (ev) => renderEvent(output, cell, ev, language === 'bash'));
      break;
    }
  } catch (e) {
    output.appendChild(el('pre', { className: 'traceback' }, String(e.message || e)));
    cell.dataset.state = 'failed';
  } finally {
    run.disabled = false;
    interrupt.disabled = true;
    if (cell.dataset.state === 'running') cell.dataset.state = 'done';
    if (cell === $('#cells').lastElementChild && $('.cell-code', cell).value.trim()) addCell('', language);
  }
}

// ---- terminal (POST /pty, then its WebSocket) ------------------------------------------

let terminalSocket = null;

async function openTerminal() {
  const status = $('#terminal-status');
  if (terminalSocket) return;
  const host = $('#terminal');
  host.textContent = '';
  const term = new Terminal({ fontSize: 13, cursorBlink: true, scrollback: 5000 });
  const fit = new FitAddon.FitAddon();
  term.loadAddon(fit);
  term.open(host);
  fit.fit();
  const res = await postJson('/pty', { cols: term.cols, rows: term.rows });
  if (!res.ok) { status.textContent = `terminal: ${await errorText(res)}`; term.dispose(); return; }
  const { session_id: id } = await res.json();
  const wsUrl = apiUrl(`/pty/${encodeURIComponent(id)}/ws`).replace(/^http/, 'ws');
  // A browser cannot put headers on a WebSocket: the token goes as a subprotocol.
  const ws = token ? new WebSocket(wsUrl, ['execd', `execd.token.${token}`]) : new WebSocket(wsUrl);
  ws.binaryType = 'arraybuffer';
  terminalSocket = ws;
  const encoder = new TextEncoder();
  ws.onopen = () => { status.textContent = `session ${id}`; term.focus(); };
  ws.onmessage = (m) => {
    if (typeof m.data === 'string') {
      const j = JSON.parse(m.data);
      if (j.type === 'exit') status.textContent = `shell exited with code ${j.exit_code}`;
      return;
    }
    const bytes = new Uint8Array(m.data);
    if (bytes[0] === 1 || bytes[0] === 2) term.write(bytes.subarray(1));
    else if (bytes[0] === 3) term.write(bytes.subarray(9)); // replay: 8-byte offset first
  };
  ws.onclose = (e) => {
    terminalSocket = null;
    if (!status.textContent.startsWith('shell exited')) status.textContent = `disconnected (${e.code}${e.reason ? ` ${e.reason}` : ''})`;
  };
  term.onData((data) => {
    if (ws.readyState !== WebSocket.OPEN) return;
    const body = encoder.encode(data);
    const frame = new Uint8Array(body.length + 1);
    frame[0] = 0; // stdin
    frame.set(body, 1);
    ws.send(frame);
  });
  term.onResize(({ cols, rows }) => {
    if (ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify({ type: 'resize', cols, rows }));
  });
  new ResizeObserver(() => fit.fit()).observe(host);
}

// ---- files ------------------------------------------------------------------------------

const basename = (p) => p.replace(/\/+$/, '').split('/').pop() || '/';
const parentOf = (p) => p.replace(/\/+$/, '').replace(/\/[^/]*$/, '') || '/';

function humanSize(n) {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; ++i; }
  return `${i ? n.toFixed(1) : n} ${units[i]}`;
}

let listing = 0; // only the newest listing is shown, whichever answers first

async function listFiles(path) {
  const mine = ++listing;
  $('#files-path').value = path;
  $('#files-error').textContent = '';
  const res = await api(`/directories/list?path=${encodeURIComponent(path)}&depth=1`);
  const failure = res.ok ? null : await errorText(res);
  const entries = res.ok ? await res.json() : [];
  if (mine !== listing) return;
  const body = $('#files-table tbody');
  body.textContent = '';
  $('#files-table').dataset.path = path; // what the table shows now
  if (failure) { $('#files-error').textContent = failure; return; }
  // Directories first, then by name.
  entries.sort((a, b) => (b.type === 'directory') - (a.type === 'directory') || a.path.localeCompare(b.path));
  for (const entry of entries) {
    const row = el('tr', { className: `entry ${entry.type}` });
    const name = el('a', {}, basename(entry.path) + (entry.type === 'directory' ? '/' : ''));
    if (entry.type === 'directory') name.onclick = () => listFiles(entry.path);
    else name.onclick = () => download(entry.path);
    row.appendChild(el('td')).appendChild(name);
    row.appendChild(el('td', {}, entry.type === 'directory' ? '' : humanSize(entry.size)));
    row.appendChild(el('td', {}, (entry.modified_at || '').replace('T', ' ').replace(/\.\d+/, '')));
    const action = row.appendChild(el('td'));
    if (entry.type === 'file') {
      const link = el('a', { title: 'download' }, '⬇');
      link.onclick = () => download(entry.path);
      action.appendChild(link);
    }
    body.appendChild(row);
  }
}

async function download(path) {
  const res = await api(`/files/download?path=${encodeURIComponent(path)}`);
  if (!res.ok) { $('#files-error').textContent = await errorText(res); return; }
  const url = URL.createObjectURL(await res.blob());
  const a = el('a', { href: url, download: basename(path) });
  document.body.appendChild(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10000);
}

// XMLHttpRequest, not fetch: only it reports upload progress.
function upload(file) {
  const dir = $('#files-path').value.replace(/\/+$/, '') || '';
  const form = new FormData();
  form.append('metadata', new Blob([JSON.stringify({ path: `${dir}/${file.name}` })], { type: 'application/json' }), 'metadata');
  form.append('file', file, file.name);
  const xhr = new XMLHttpRequest();
  const progress = $('#files-progress');
  const status = $('#files-upload-status');
  progress.hidden = false;
  progress.value = 0;
  xhr.upload.onprogress = (e) => {
    if (e.lengthComputable) {
      progress.value = e.loaded / e.total;
      status.textContent = `${humanSize(e.loaded)} of ${humanSize(e.total)}`;
    }
  };
  xhr.onload = () => {
    progress.hidden = true;
    status.textContent = xhr.status < 300 ? `uploaded ${file.name}` : `upload failed: HTTP ${xhr.status} ${xhr.responseText.slice(0, 200)}`;
    listFiles($('#files-path').value);
  };
  xhr.onerror = () => { progress.hidden = true; status.textContent = 'upload failed: connection error'; };
  xhr.open('POST', apiUrl('/files/upload'));
  if (token) xhr.setRequestHeader('X-EXECD-ACCESS-TOKEN', token);
  xhr.send(form);
}

// ---- metrics (GET /metrics/watch, one sample a second) -------------------------------------

const samples = [];
const kSamples = 120;

function drawChart() {
  const canvas = $('#metrics-chart');
  const g = canvas.getContext('2d');
  const { width: w, height: h } = canvas;
  g.clearRect(0, 0, w, h);
  g.strokeStyle = '#2a3344';
  g.beginPath();
  g.moveTo(0, h / 2); g.lineTo(w, h / 2);
  g.stroke();
  const line = (color, value) => {
    g.strokeStyle = color;
    g.lineWidth = 1.5;
    g.beginPath();
    samples.forEach((s, i) => {
      // The first samples spread over a 30-second window, then the window grows to kSamples.
      const x = w - (samples.length - 1 - i) * (w / (Math.max(30, samples.length) - 1));
      const y = h - 2 - (Math.min(100, Math.max(0, value(s))) / 100) * (h - 4);
      if (i) g.lineTo(x, y); else g.moveTo(x, y);
    });
    g.stroke();
  };
  line('#4fc3f7', (s) => (s.mem_total_mib ? (100 * s.mem_used_mib) / s.mem_total_mib : 0));
  line('#66bb6a', (s) => s.cpu_used_pct);
}

async function watchMetrics() {
  for (;;) {
    try {
      const res = await api('/metrics/watch');
      if (res.ok) {
        await readSse(res, (m) => {
          if (typeof m.cpu_used_pct !== 'number') return;
          samples.push(m);
          if (samples.length > kSamples) samples.shift();
          $('#metrics-text').textContent =
            `CPU ${m.cpu_used_pct.toFixed(1)}% of ${m.cpu_count} · mem ${Math.round(m.mem_used_mib)} / ${Math.round(m.mem_total_mib)} MiB`;
          $('#metrics-chart').dataset.samples = samples.length;
          drawChart();
        });
      }
    } catch (_) { /* reconnect below */ }
    await new Promise((r) => setTimeout(r, 2000));
  }
}

// ---- start -------------------------------------------------------------------------------

async function start() {
  let res = await fetch(apiUrl('/ping'), { headers: authHeaders() });
  if (res.status === 401) {
    await askForToken(token ? 'The stored token was refused.' : '');
    res = await fetch(apiUrl('/ping'), { headers: authHeaders() });
  }
  $('#status').textContent = res.ok ? `connected to ${API_BASE.host}` : `ping: HTTP ${res.status}`;
  document.body.dataset.ready = 'true';
  $('#add-cell').onclick = () => addCell();
  addCell('1 + 1');
  $('#terminal-start').onclick = () => openTerminal();
  $('#files-form').onsubmit = (e) => { e.preventDefault(); listFiles($('#files-path').value); };
  $('#files-up').onclick = () => listFiles(parentOf($('#files-path').value));
  $('#files-upload').onchange = (e) => { for (const f of e.target.files) upload(f); e.target.value = ''; };
  listFiles($('#files-path').value);
  watchMetrics();
}

start();
