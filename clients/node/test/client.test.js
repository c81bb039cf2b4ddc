// End-to-end checks of the Node client against a running server: every RPC, the shapes and meanings of the
// answers, error codes, and parity with the Python client.
//
//   CROSSMODAL_ADDRESS       host:port of a server over the committed demo models (required)
//   CROSSMODAL_EXPECTATIONS  JSON written by the Python client (tests/test_node_client.py): a Chinese text's
//                            translations and embedding and the example image's embedding. Without it the
//                            parity tests are reported as skipped.

import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { dirname, resolve } from "node:path";
import { after, before, describe, it } from "node:test";
import { fileURLToPath } from "node:url";

import { CrossModalClient, makeItem, status } from "../src/client.js";

const HERE = dirname(fileURLToPath(import.meta.url));
const ADDRESS = process.env.CROSSMODAL_ADDRESS;
const EXPECTATIONS_PATH = process.env.CROSSMODAL_EXPECTATIONS;
const expectations = EXPECTATIONS_PATH ? JSON.parse(readFileSync(EXPECTATIONS_PATH, "utf8")) : null;
const NO_EXPECTATIONS = !expectations && "CROSSMODAL_EXPECTATIONS is not set";

const TEXT = expectations?.text ?? "两只狗在雪地里";
const IMAGE_PATH = expectations?.image ?? resolve(HERE, "../../python/examples/data/two_dogs_in_snow.jpg");
const CAPTIONS = ["two dogs in the snow", "一只猫在桌子上", "London at night"];
const PARITY_TOLERANCE = 1e-5; // float32 values through two clients; only batching could move them at all
const TOLERANCE = 1e-4; // sums and products of float32 values

if (!ADDRESS) {
  throw new Error("CROSSMODAL_ADDRESS is not set: start a server (make serve) and set it to its host:port");
}

const image = readFileSync(IMAGE_PATH);

function norm(values) {
  return Math.sqrt(values.reduce((sum, v) => sum + v * v, 0));
}

function dot(a, b) {
  return a.reduce((sum, v, i) => sum + v * b[i], 0);
}

function softmax(logits) {
  const top = Math.max(...logits);
  const exps = logits.map((v) => Math.exp(v - top));
  const total = exps.reduce((a, b) => a + b, 0);
  return exps.map((v) => v / total);
}

function assertClose(actual, expected, tolerance, what) {
  assert.equal(actual.length, expected.length, `${what}: length`);
  actual.forEach((v, i) =>
    assert.ok(Math.abs(v - expected[i]) <= tolerance, `${what}[${i}]: ${v} vs ${expected[i]}`),
  );
}

function assertDescending(values, what) {
  values.slice(1).forEach((v, i) => assert.ok(v <= values[i], `${what} not sorted best first: ${values}`));
}

/** A Chinese TextResult: jieba words that make up the text, n-best translations, the best one encoded. */
function assertChinese(result, text) {
  assert.equal(result.text, text);
  assert.equal(result.language, "zh");
  assert.ok(result.tokens.length > 0, "no jieba tokens");
  assert.equal(result.tokens.join(""), text, "jieba tokens do not make up the text");
  assert.ok(result.translations.length > 0, "no translations");
  for (const hypothesis of result.translations) assert.ok(hypothesis.text.trim().length > 0, "empty translation");
  assertDescending(
    result.translations.map((h) => h.score),
    "translations",
  );
}

describe("CrossModalClient", () => {
  let client;
  before(() => {
    client = new CrossModalClient(ADDRESS, { timeoutMs: 30_000 });
  });
  after(() => client.close());

  it("encodes an image and texts into unit vectors of one size", async () => {
    const encoded = await client.encode([image, TEXT, "two dogs in the snow"]);
    assert.equal(encoded.embeddings.length, 3);
    const size = encoded.embeddings[0].values.length;
    assert.ok(size > 0);
    if (expectations) assert.equal(size, expectations.image_embedding.length);
    for (const { values } of encoded.embeddings) {
      assert.equal(values.length, size);
      assert.ok(Math.abs(norm(values) - 1) < TOLERANCE, `norm ${norm(values)}`);
    }

    assert.equal(encoded.texts.length, 2, "one TextResult per text item");
    const [chinese, english] = encoded.texts;
    assertChinese(chinese, TEXT);
    assert.equal(chinese.encoded_text, chinese.translations[0].text, "the best translation is encoded");
    assert.deepEqual(
      { language: english.language, tokens: english.tokens, translations: english.translations },
      { language: "en", tokens: [], translations: [] },
    );
    assert.equal(english.encoded_text, "two dogs in the snow");

    const served = Object.fromEntries(encoded.model.models.map((m) => [m.name, m.version]));
    assert.deepEqual(Object.keys(served).sort(), ["clip_text", "clip_vision", "opus_mt_zh_en"]);
    for (const version of Object.values(served)) assert.ok(Number.isInteger(version) && version >= 1);
  });

  it("accepts every item form", async () => {
    const forms = [image, { image }, new Uint8Array(image), TEXT, { text: TEXT }];
    const { embeddings } = await client.encode(forms);
    assertClose(embeddings[1].values, embeddings[0].values, PARITY_TOLERANCE, "{image}");
    assertClose(embeddings[2].values, embeddings[0].values, PARITY_TOLERANCE, "Uint8Array");
    assertClose(embeddings[4].values, embeddings[3].values, PARITY_TOLERANCE, "{text}");
    assert.throws(() => makeItem(42), TypeError);
    assert.throws(() => makeItem({ image, text: TEXT }), TypeError);
  });

  it("compares queries with candidates: cosine and per-row softmax", async () => {
    const compared = await client.compare([image, TEXT], CAPTIONS);
    assert.equal(compared.rows, 2);
    assert.equal(compared.cols, 3);
    assert.equal(compared.similarity.length, 6);
    assert.equal(compared.probabilities.length, 6);
    assert.ok(compared.logit_scale > 0);
    for (let row = 0; row < 2; row++) {
      const similarity = compared.similarity.slice(row * 3, row * 3 + 3);
      const probabilities = compared.probabilities.slice(row * 3, row * 3 + 3);
      for (const s of similarity) assert.ok(s >= -1 - TOLERANCE && s <= 1 + TOLERANCE, `cosine ${s}`);
      const total = probabilities.reduce((a, b) => a + b, 0);
      assert.ok(Math.abs(total - 1) < TOLERANCE, `row ${row} probabilities sum to ${total}`);
      const expected = softmax(similarity.map((s) => s * compared.logit_scale));
      assertClose(probabilities, expected, TOLERANCE, `row ${row} softmax`);
    }
    // The demo models know this world: the image of two dogs in the snow is closest to its caption.
    const imageRow = compared.similarity.slice(0, 3);
    assert.equal(imageRow.indexOf(Math.max(...imageRow)), 0, `image row ${imageRow}`);
    assert.equal(compared.texts.length, 4, "queries' texts first, then the candidates'");
    assertChinese(compared.texts[0], TEXT);

    // Similarity is the dot product of the unit embeddings that Encode gives.
    const { embeddings } = await client.encode([image, CAPTIONS[0]]);
    const cosine = dot(embeddings[0].values, embeddings[1].values);
    assert.ok(Math.abs(cosine - compared.similarity[0]) < TOLERANCE, `${cosine} vs ${compared.similarity[0]}`);
  });

  it("classifies an image against labels, best first", async () => {
    const labels = ["dog", "cat", "car"];
    const all = await client.classify([image], labels, { promptTemplate: "a photo of {}" });
    assert.equal(all.results.length, 1);
    const scores = all.results[0].scores;
    assert.equal(scores.length, 3);
    assert.deepEqual(scores.map((s) => s.index).sort(), [0, 1, 2]);
    for (const s of scores) assert.equal(s.label, labels[s.index]);
    assertDescending(
      scores.map((s) => s.probability),
      "scores",
    );
    const total = scores.reduce((sum, s) => sum + s.probability, 0);
    assert.ok(Math.abs(total - 1) < TOLERANCE, `probabilities sum to ${total}`);
    assert.equal(scores[0].label, "dog");
    assert.deepEqual(
      all.labels.map((t) => t.text),
      labels.map((l) => `a photo of ${l}`),
    );

    const top = await client.classify([image], labels, { promptTemplate: "a photo of {}", topK: 2 });
    assert.deepEqual(
      top.results[0].scores.map((s) => s.index),
      scores.slice(0, 2).map((s) => s.index),
    );
  });

  it("translates Chinese into n-best English", async () => {
    const texts = [TEXT, "一只猫在桌子上"];
    const translated = await client.translate(texts, { numHypotheses: 3 });
    assert.equal(translated.results.length, 2);
    translated.results.forEach((result, i) => {
      assertChinese(result, texts[i]);
      assert.equal(result.translations.length, 3);
      for (const h of result.translations) assert.ok(Number.isFinite(h.score) && h.score <= 0, `score ${h.score}`);
    });
    assert.deepEqual(
      translated.model.models.map((m) => m.name),
      ["opus_mt_zh_en"],
    );
  });

  it("translates as the Python client does", { skip: NO_EXPECTATIONS }, async () => {
    const [result] = (await client.translate([TEXT])).results;
    assert.deepEqual(
      result.translations.map((h) => h.text),
      expectations.translations.map((h) => h.text),
    );
    assertClose(
      result.translations.map((h) => h.score),
      expectations.translations.map((h) => h.score),
      PARITY_TOLERANCE,
      "scores",
    );
  });

  it("embeds as the Python client does", { skip: NO_EXPECTATIONS }, async () => {
    const encoded = await client.encode([TEXT, image]);
    assert.equal(encoded.texts[0].encoded_text, expectations.encoded_text);
    assertClose(encoded.embeddings[0].values, expectations.text_embedding, PARITY_TOLERANCE, "text embedding");
    assertClose(encoded.embeddings[1].values, expectations.image_embedding, PARITY_TOLERANCE, "image embedding");
  });

  it("lists the repository", async () => {
    const index = await client.repositoryIndex();
    const byName = Object.fromEntries(index.models.map((m) => [m.name, m]));
    assert.equal(byName.clip?.kind, "pipeline");
    for (const name of ["clip_vision", "clip_text", "opus_mt_zh_en"]) {
      assert.equal(byName[name]?.state, "READY", `${name}: ${JSON.stringify(byName[name])}`);
      assert.ok(Number.isInteger(byName[name].version) && byName[name].version >= 1);
    }
    const ready = await client.repositoryIndex({ readyOnly: true });
    assert.ok(ready.models.every((m) => m.state === "READY"));
  });

  it("rejects invalid requests with the server's status", async () => {
    await assert.rejects(client.encode([]), (error) => {
      assert.equal(error.code, status.INVALID_ARGUMENT);
      assert.match(error.details, /items/);
      return true;
    });
    await assert.rejects(client.encode([Buffer.from("not an image")]), (error) => {
      assert.equal(error.code, status.INVALID_ARGUMENT);
      assert.match(error.details, /items\[0\]/, "the message names the item");
      return true;
    });
    await assert.rejects(client.encode([TEXT], { model: "no_such_pipeline" }), { code: status.NOT_FOUND });
    // A value that is no item rejects locally, without a call.
    await assert.rejects(client.encode([42]), TypeError);
  });

  it("sends a bearer token as metadata", async () => {
    const withToken = new CrossModalClient(ADDRESS, { token: "secret" });
    try {
      assert.deepEqual(withToken.metadata.get("authorization"), ["Bearer secret"]);
      await withToken.repositoryIndex(); // a server without --auth-token-file ignores it
    } finally {
      withToken.close();
    }
  });
});
