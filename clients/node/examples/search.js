#!/usr/bin/env node
// Image-text search, the reference example over gRPC from Node.js: one image against some texts.
//
//   node examples/search.js --server 127.0.0.1:8001 \
//     --image ../python/examples/data/two_dogs_in_snow.jpg --text "两只狗在雪地里" --text "a cat"
//
// Prints, per text, its jieba tokens and n-best translations (Translate), the embeddings (Encode), the
// similarity of the image to each text as cosine x 100 % and the softmax probabilities over the texts
// (Compare), then the image's zero-shot labels (Classify).

import { readFileSync } from "node:fs";
import { dirname, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";

import { CrossModalClient, status } from "../src/client.js";

const HERE = dirname(fileURLToPath(import.meta.url));
const DEFAULT_IMAGE = resolve(HERE, "../../python/examples/data/two_dogs_in_snow.jpg");
const DEFAULT_TEXTS = ["在雪地里有两条狗", "一只猫在桌子上", "夜晚的伦敦"];
const DEFAULT_LABELS = ["dog", "cat", "bird", "car", "tree"];
const USAGE = `usage: node examples/search.js [--server HOST:PORT] [--image FILE] [--text TEXT ...]
                              [--label LABEL ...] [--prompt-template "a photo of {}"] [--top-k N]
                              [--timeout SECONDS] [--token TOKEN]`;

const SHOWN_VALUES = 6;
const HAN = /\p{Script=Han}/u; // the server's rule: a text with Han characters is Chinese

/** A vector abbreviated to its first and last values, as the Python client's report shows it. */
function vector(values) {
  const format = (list) => list.map((v) => v.toFixed(4)).join(", ");
  if (values.length <= SHOWN_VALUES) return `[${format(values)}]`;
  const half = SHOWN_VALUES / 2;
  return `[${format(values.slice(0, half))}, ..., ${format(values.slice(-half))}] (${values.length} values)`;
}

function models(info) {
  return info.models.map((m) => `${m.name} v${m.version}`).join(", ");
}

function options() {
  const { values } = parseArgs({
    options: {
      server: { type: "string", default: "127.0.0.1:8001" },
      image: { type: "string", default: DEFAULT_IMAGE },
      text: { type: "string", multiple: true },
      label: { type: "string", multiple: true },
      "prompt-template": { type: "string", default: "a photo of {}" },
      "top-k": { type: "string", default: "3" },
      timeout: { type: "string", default: "60" },
      token: { type: "string", default: process.env.CROSSMODAL_AUTH_TOKEN },
      help: { type: "boolean", short: "h" },
    },
  });
  if (values.help) {
    console.log(USAGE);
    process.exit(0);
  }
  return values;
}

async function main() {
  const args = options();
  const texts = args.text ?? DEFAULT_TEXTS;
  const labels = args.label ?? DEFAULT_LABELS;
  const image = readFileSync(args.image);
  const client = new CrossModalClient(args.server, { timeoutMs: Number(args.timeout) * 1000, token: args.token });
  try {
    // Translate takes any text as Chinese, so only the Chinese ones are sent to it.
    const chinese = texts.filter((text) => HAN.test(text));
    const translated = chinese.length ? await client.translate(chinese, { numHypotheses: 5 }) : { results: [] };
    const encoded = await client.encode([image, ...texts]);
    const compared = await client.compare([image], texts);
    const classified = await client.classify([image], labels, {
      promptTemplate: args["prompt-template"],
      topK: Number(args["top-k"]),
    });

    console.log(`image: ${args.image}`);
    const imageEmbedding = encoded.embeddings[0].values;
    console.log(`vector dimension: ${imageEmbedding.length}`);
    console.log(`image embedding: ${vector(imageEmbedding)}`);
    texts.forEach((text, i) => {
      console.log(`text: ${text}  (${encoded.texts[i].language})`);
      const result = translated.results[chinese.indexOf(text)];
      if (result) {
        console.log(`  tokens: [${result.tokens.join(", ")}]`);
        result.translations.forEach((h, rank) =>
          console.log(`  translation ${rank + 1}: ${h.text}  (score ${h.score.toFixed(4)})`),
        );
      }
      if (encoded.texts[i].encoded_text !== text) console.log(`  encoded as: ${encoded.texts[i].encoded_text}`);
      console.log(`  text embedding: ${vector(encoded.embeddings[i + 1].values)}`);
      console.log(`  similarity: ${(compared.similarity[i] * 100).toFixed(2)}%`);
    });
    console.log(`probabilities: [${compared.probabilities.map((p) => p.toFixed(4)).join(", ")}]`);
    console.log(`labels (${args["prompt-template"] || "as given"}):`);
    for (const score of classified.results[0].scores) {
      console.log(`  ${score.label}: ${(score.probability * 100).toFixed(2)}%  (cosine ${score.similarity.toFixed(4)})`);
    }
    console.log(`served by: ${models(encoded.model)}`);
  } finally {
    client.close();
  }
}

main().catch((error) => {
  // A gRPC error carries a numeric status code and the server's message; anything else is a local problem.
  if (typeof error.code === "number") console.error(`error ${status[error.code]} (${error.code}): ${error.details}`);
  else if (String(error.code).startsWith("ERR_PARSE_ARGS")) console.error(`${error.message}\n${USAGE}`);
  else console.error(error.message);
  process.exit(1);
});
