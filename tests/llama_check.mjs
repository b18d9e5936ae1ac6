// Runs a GGUF file in llama.cpp through node-llama-cpp (CPU, f32 KV cache, no flash
// attention, so the computation is llama.cpp's plain f32 path) and prints what the
// export tests compare with moelab:
//   logits MODEL IDS OUT.f32   next-token logits after every id of IDS (float32 [n, V])
//   greedy MODEL IDS N         greedy continuation of IDS (stops at end-of-text), ids on one line
//   tokenize MODEL TEXT        llama.cpp's token ids of the file's text, on one line
//   bench MODEL IDS N R        generation tokens/s of R greedy runs of N tokens, one a line
// IDS is a file of whitespace-separated token ids. The package is found in
// $MOELAB_LLAMA_DIR (its node_modules folder), else build/llama/node_modules.
import fs from "node:fs";
import path from "node:path";
import { pathToFileURL } from "node:url";

const dir = process.env.MOELAB_LLAMA_DIR || path.resolve("build/llama/node_modules");
const { getLlama, LlamaLogLevel } = await import(pathToFileURL(path.join(dir, "node-llama-cpp/dist/index.js")).href);

const [mode, modelPath, arg1, arg2, arg3] = process.argv.slice(2);
const readIds = (f) => fs.readFileSync(f, "utf8").trim().split(/\s+/).filter(Boolean).map(Number);

const llama = await getLlama({ gpu: false, build: "never", logLevel: LlamaLogLevel.error });
const model = await llama.loadModel({ modelPath });

async function context(n) {
    const size = Math.max(n, 16);
    return model.createContext({
        contextSize: size, batchSize: size, sequences: 1, flashAttention: false,
        experimentalKvCacheKeyType: "F32", experimentalKvCacheValueType: "F32",
        threads: Number(process.env.LLAMA_THREADS || 1),
    });
}

async function greedy(seq, ids, n) {
    const out = [];
    const eot = model.tokens.eos;
    for await (const tok of seq.evaluate(ids, { temperature: 0 })) {
        if (tok === eot || out.length >= n) break;
        out.push(tok);
        if (out.length >= n) break;
    }
    return out;
}

if (mode === "logits") {
    const ids = readIds(arg1);
    const ctx = await context(ids.length + 1);
    const res = await ctx.getSequence().controlledEvaluate(ids.map((t) => [t, { generateNext: { logits: true } }]));
    const n = ids.length, vocab = res[0]?.next?.logits?.size ?? 0;
    const buf = new Float32Array(n * vocab);
    for (let i = 0; i < n; i++) {
        const m = res[i]?.next?.logits;
        if (!m || m.size !== vocab) throw new Error(`position ${i}: got ${m ? m.size : 0} logits, expected ${vocab}`);
        for (const [tok, v] of m) buf[i * vocab + tok] = v;
    }
    fs.writeFileSync(arg2, Buffer.from(buf.buffer));
} else if (mode === "greedy") {
    const ids = readIds(arg1), n = Number(arg2);
    const ctx = await context(ids.length + n);
    console.log((await greedy(ctx.getSequence(), ids, n)).join(" "));
} else if (mode === "tokenize") {
    const text = fs.readFileSync(arg1, "utf8");
    console.log(model.tokenize(text, false).join(" "));
} else if (mode === "bench") {
    const ids = readIds(arg1), n = Number(arg2), runs = Number(arg3);
    const ctx = await context(ids.length + n);
    const seq = ctx.getSequence();
    for (let r = 0; r < runs; r++) {
        await seq.clearHistory();
        await greedy(seq, ids.slice(0, -1), 0); // the prompt, outside the timing
        const t0 = process.hrtime.bigint();
        const out = await greedy(seq, ids.slice(-1), n);
        const s = Number(process.hrtime.bigint() - t0) / 1e9;
        console.log((out.length / s).toFixed(1));
    }
} else {
    console.error("usage: node tests/llama_check.mjs logits|greedy|tokenize|bench MODEL ...");
    process.exit(2);
}
await model.dispose();
await llama.dispose();
