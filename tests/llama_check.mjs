// Runs GGUF files in llama.cpp through node-llama-cpp (CPU, f32 KV cache, no flash
// attention, so the computation is llama.cpp's plain f32 path) and writes what the
// export tests compare with moelab. Each job is one line of words:
//   logits MODEL IDS OUT      next-token logits after every id of each line of IDS (float32 [n, V])
//   greedy MODEL IDS N OUT    greedy continuation of IDS (stops at end-of-text): ids on one line
//   tokenize MODEL TEXT OUT   llama.cpp's token ids of the file's text, on one line
//   bench MODEL IDS N R OUT   generation tokens/s of R greedy runs of N tokens after IDS, one a line
// Usage: node tests/llama_check.mjs JOB-WORDS...  or  node tests/llama_check.mjs --jobs FILE
// (one process for many jobs: starting llama.cpp costs seconds). IDS files hold
// whitespace-separated token ids. The package is found in $MOELAB_LLAMA_DIR (its
// node_modules folder), else build/llama/node_modules.
import fs from "node:fs";
import path from "node:path";
import { pathToFileURL } from "node:url";

const dir = process.env.MOELAB_LLAMA_DIR || path.resolve("build/llama/node_modules");
const { getLlama, LlamaLogLevel } = await import(pathToFileURL(path.join(dir, "node-llama-cpp/dist/index.js")).href);
const llama = await getLlama({ gpu: false, build: "never", logLevel: LlamaLogLevel.error });
const threads = Number(process.env.LLAMA_THREADS || 1);

const readIds = (text) => text.trim().split(/\s+/).filter(Boolean).map(Number);
const models = new Map();
async function load(modelPath) {
    if (!models.has(modelPath)) models.set(modelPath, await llama.loadModel({ modelPath }));
    return models.get(modelPath);
}

// A context one larger than needed: a completely full one gives a different last position.
function context(model, n) {
    const size = Math.max(n + 1, 16);
    return model.createContext({
        contextSize: size, batchSize: size, sequences: 1, flashAttention: false,
        experimentalKvCacheKeyType: "F32", experimentalKvCacheValueType: "F32", threads,
    });
}

async function greedy(model, seq, ids, n) {
    const out = [];
    if (n <= 0) {
        for await (const tok of seq.evaluate(ids, { temperature: 0 })) break; // eslint-disable-line no-unused-vars
        return out;
    }
    for await (const tok of seq.evaluate(ids, { temperature: 0 })) {
        if (tok === model.tokens.eos) break;
        out.push(tok);
        if (out.length >= n) break;
    }
    return out;
}

async function logits(model, idsFile, out) {
    const parts = [];
    for (const line of fs.readFileSync(idsFile, "utf8").split("\n")) {
        const ids = readIds(line);
        if (!ids.length) continue;
        const ctx = await context(model, ids.length);
        const res = await ctx.getSequence().controlledEvaluate(ids.map((t) => [t, { generateNext: { logits: true } }]));
        const vocab = res[0]?.next?.logits?.size ?? 0, buf = new Float32Array(ids.length * vocab);
        for (let i = 0; i < ids.length; i++) {
            const m = res[i]?.next?.logits;
            if (!m || m.size !== vocab) throw new Error(`position ${i}: got ${m ? m.size : 0} logits, expected ${vocab}`);
            for (const [tok, v] of m) buf[i * vocab + tok] = v;
        }
        parts.push(Buffer.from(buf.buffer));
        await ctx.dispose();
    }
    fs.writeFileSync(out, Buffer.concat(parts));
}

async function job(words) {
    const [mode, modelPath, a1, a2, a3, a4] = words;
    const model = await load(modelPath);
    if (mode === "logits") return logits(model, a1, a2);
    if (mode === "tokenize") return fs.writeFileSync(a2, model.tokenize(fs.readFileSync(a1, "utf8"), false).join(" ") + "\n");
    const ids = readIds(fs.readFileSync(a1, "utf8")), n = Number(a2);
    if (mode === "greedy") {
        const ctx = await context(model, ids.length + n);
        fs.writeFileSync(a3, (await greedy(model, ctx.getSequence(), ids, n)).join(" ") + "\n");
        return ctx.dispose();
    }
    if (mode === "bench") {
        const ctx = await context(model, ids.length + n), seq = ctx.getSequence(), rates = [];
        for (let r = 0; r < Number(a3); r++) {
            await seq.clearHistory();
            await greedy(model, seq, ids.slice(0, -1), 0); // the prompt, outside the timing
            const t0 = process.hrtime.bigint();
            const got = await greedy(model, seq, ids.slice(-1), n);
            rates.push((got.length / (Number(process.hrtime.bigint() - t0) / 1e9)).toFixed(1));
        }
        fs.writeFileSync(a4, rates.join("\n") + "\n");
        return ctx.dispose();
    }
    throw new Error(`unknown job '${mode}'`);
}

const args = process.argv.slice(2);
const jobs = args[0] === "--jobs"
    ? fs.readFileSync(args[1], "utf8").split("\n").map((l) => l.trim().split(/\s+/)).filter((w) => w[0])
    : [args];
let failed = 0;
for (const words of jobs) {
    try {
        await job(words);
    } catch (e) {
        failed++;
        console.error(`llama_check: ${words.join(" ")}: ${e.message}`);
    }
}
for (const m of models.values()) await m.dispose();
await llama.dispose();
process.exit(failed ? 1 : 0);
