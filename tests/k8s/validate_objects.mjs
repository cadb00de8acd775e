// Validates Kubernetes objects against Kubernetes' own OpenAPI definitions, as packaged
// by the npm package kubernetes-models (installed by `make k8s-schema` into .k8s-schema/).
//
//   node validate_objects.mjs MODELS_DIR < objects.json      a JSON array; prints one result
//                                                            line per object, exits 1 if any fails
//   node validate_objects.mjs MODELS_DIR --lines             one JSON object per input line, one
//                                                            result line each (the API stand-in)
//
// Two checks per object: kubernetes-models' validate() (types, formats such as quantities,
// required fields, enums), and a strict walk refusing any field the definitions do not
// name (the API server drops or refuses those; the models' validate() lets them pass).
// The walk reads the property lists from the package's .d.ts files. A ConfigMap annotated
// `execd.io/validate-data-as: <Kind>` has each data value parsed as JSON and checked as
// that kind too (the sandbox pod template in deploy/k8s).
import fs from "node:fs";
import path from "node:path";
import readline from "node:readline";
import { pathToFileURL } from "node:url";

const modelsRoot = path.resolve(process.argv[2] || "");
const pkg = path.join(modelsRoot, "node_modules", "kubernetes-models");
if (!fs.existsSync(pkg)) {
  console.error(`validate_objects: no kubernetes-models under ${modelsRoot} (run make k8s-schema)`);
  process.exit(2);
}

function groupDir(apiVersion) {
  if (!apiVersion) return null;
  return apiVersion.includes("/") ? apiVersion : apiVersion;  // "v1" and "apps/v1" alike
}

// ---- the strict field walk over .d.ts property lists ----
const parsed = new Map();  // d.ts path -> { imports: Map(name -> d.ts path), interfaces: Map(name -> props) }

function resolveImport(from, spec) {
  if (spec.startsWith(".")) return path.resolve(path.dirname(from), spec.replace(/\.js$/, "") + ".d.ts");
  return path.join(modelsRoot, "node_modules", spec.replace(/\.js$/, "") + ".d.ts");
}

// The type text up to the ';' that ends a property at brace depth 0.
function splitProps(body) {
  const props = new Map();
  let i = 0;
  while (i < body.length) {
    const m = /"([^"]+)"\??\s*:\s*/y;
    m.lastIndex = i;
    const hit = m.exec(body);
    if (!hit) { i++; continue; }
    let j = m.lastIndex, depth = 0;
    while (j < body.length) {
      const c = body[j];
      if (c === "{" || c === "<" || c === "(") depth++;
      else if (c === "}" || c === ">" || c === ")") depth--;
      else if (c === ";" && depth === 0) break;
      j++;
    }
    props.set(hit[1], body.slice(m.lastIndex, j).trim());
    i = j + 1;
  }
  return props;
}

function parseDts(file) {
  if (parsed.has(file)) return parsed.get(file);
  const out = { imports: new Map(), interfaces: new Map() };
  parsed.set(file, out);
  if (!fs.existsSync(file)) return out;
  const text = fs.readFileSync(file, "utf8").replace(/\/\*[\s\S]*?\*\//g, "");
  for (const m of text.matchAll(/import\s*\{([^}]*)\}\s*from\s*"([^"]+)"/g)) {
    for (const name of m[1].split(",").map((s) => s.trim().split(/\s+as\s+/).pop()).filter(Boolean)) {
      out.imports.set(name, resolveImport(file, m[2]));
    }
  }
  for (const m of text.matchAll(/export interface (\w+)(?:\s+extends\s+[^{]+)?\s*\{/g)) {
    let depth = 1, j = m.index + m[0].length;
    const start = j;
    while (j < text.length && depth > 0) {
      if (text[j] === "{") depth++;
      else if (text[j] === "}") depth--;
      j++;
    }
    out.interfaces.set(m[1], splitProps(text.slice(start, j - 1)));
  }
  return out;
}

// The interface (file, props) a type text names, or null for a leaf (string, number, union, IntOrString).
function interfaceOf(file, typeText) {
  const name = typeText.trim();
  const info = parseDts(file);
  if (info.interfaces.has(name)) return { file, props: info.interfaces.get(name) };
  const target = info.imports.get(name);
  if (!target) return null;
  const t = parseDts(target);
  // The imported file exports its interface under the imported alias or as I<Kind>.
  if (t.interfaces.size === 0) return null;
  return { file: target, props: t.interfaces.values().next().value };
}

function walk(data, file, typeText, where, errors) {
  if (data === null || data === undefined) return;
  const t = typeText.trim();
  let m;
  if ((m = /^Array<([\s\S]+)>$/.exec(t))) {
    if (Array.isArray(data)) data.forEach((item, k) => walk(item, file, m[1], `${where}[${k}]`, errors));
    return;
  }
  if ((m = /^\{\s*\[key: string\]:\s*([\s\S]+?);?\s*\}$/.exec(t))) {
    if (typeof data === "object") for (const [k, v] of Object.entries(data)) walk(v, file, m[1], `${where}.${k}`, errors);
    return;
  }
  const iface = interfaceOf(file, t);
  if (!iface || typeof data !== "object" || Array.isArray(data)) return;
  walkObject(data, iface.file, iface.props, where, errors);
}

function walkObject(data, file, props, where, errors) {
  for (const [k, v] of Object.entries(data)) {
    if (!props.has(k)) {
      errors.push(`${where}.${k}: unknown field`);
      continue;
    }
    walk(v, file, props.get(k), `${where}.${k}`, errors);
  }
}

// ---- per object ----
async function validate(obj) {
  const name = `${obj?.kind ?? "?"}/${obj?.metadata?.name ?? "?"}`;
  const errors = [];
  const dir = groupDir(obj?.apiVersion);
  const modelFile = dir && obj?.kind ? path.join(pkg, dir, `${obj.kind}.js`) : null;
  if (!modelFile || !fs.existsSync(modelFile)) {
    return { name, ok: false, errors: [`no schema for apiVersion ${obj?.apiVersion} kind ${obj?.kind}`] };
  }
  // The ES module where the package ships one (4.x ships CommonJS .js beside .mjs, whose
  // named exports node cannot see through import()); CommonJS's exports otherwise.
  const esm = modelFile.replace(/\.js$/, ".mjs");
  const mod = await import(pathToFileURL(fs.existsSync(esm) ? esm : modelFile).href);
  const Model = mod[obj.kind] ?? mod.default?.[obj.kind];
  try {
    new Model(obj).validate();
  } catch (e) {
    errors.push(String(e.message || e));
  }
  const dts = modelFile.replace(/\.js$/, ".d.ts");
  const info = parseDts(dts);
  const top = info.interfaces.get(`I${obj.kind}`);
  if (top) walkObject(obj, dts, top, name, errors);
  else errors.push(`no definition I${obj.kind} in ${dts}`);
  const as = obj.kind === "ConfigMap" ? obj.metadata?.annotations?.["execd.io/validate-data-as"] : undefined;
  if (as) {
    for (const [key, text] of Object.entries(obj.data || {})) {
      let inner;
      try {
        inner = JSON.parse(text);
      } catch (e) {
        errors.push(`${name} data.${key}: not JSON`);
        continue;
      }
      if (inner.kind !== as) errors.push(`${name} data.${key}: kind ${inner.kind}, expected ${as}`);
      const r = await validate(inner);
      errors.push(...r.errors.map((e) => `${name} data.${key}: ${e}`));
    }
  }
  return { name, ok: errors.length === 0, errors };
}

if (process.argv.includes("--lines")) {
  const rl = readline.createInterface({ input: process.stdin });
  for await (const line of rl) {
    if (!line.trim()) continue;
    let result;
    try {
      result = await validate(JSON.parse(line));
    } catch (e) {
      result = { name: "?", ok: false, errors: [`not JSON: ${e.message}`] };
    }
    process.stdout.write(JSON.stringify(result) + "\n");
  }
} else {
  const objects = JSON.parse(fs.readFileSync(0, "utf8"));
  let failed = 0;
  for (const obj of objects) {
    const r = await validate(obj);
    if (!r.ok) failed++;
    process.stdout.write(JSON.stringify(r) + "\n");
  }
  process.exit(failed === 0 ? 0 : 1);
}
