// Promise-based client for crossmodal.v1.CrossModal: one method per RPC, taking plain JavaScript values and
// resolving to the response messages (field names exactly as in the proto, e.g. `encoded_text`).
//
// The proto is loaded at run time from the repository's protos/ folder, so this client never carries
// generated code that could drift from the contract. Loader options, and why:
//   keepCase: true   field names match the proto (and the Python client's messages);
//   longs: Number    int64 fields (model versions) arrive as numbers: versions are folder numbers, far below
//                    2^53, and `version === 1` is what callers expect to write;
//   defaults: true   unset fields arrive as their proto3 defaults ("" / 0 / []), as in other languages;
//   oneofs: true     an Item carries `kind: "image" | "text"` naming the field that is set.
// Errors reject with grpc-js's ServiceError: `code` (a grpc.status value), `details` (the server's message).

import { readFileSync } from "node:fs";
import { dirname, resolve } from "node:path";
import { fileURLToPath } from "node:url";

import grpc from "@grpc/grpc-js";
import protoLoader from "@grpc/proto-loader";

const HERE = dirname(fileURLToPath(import.meta.url));
export const PROTO_ROOT = resolve(HERE, "../../../protos");
export const PROTO_FILE = "crossmodal/v1/crossmodal.proto";
export const DEFAULT_MESSAGE_BYTES = 64 * 1024 * 1024; // the server's default --max-message-bytes
export const { status } = grpc; // status codes, so callers can write `error.code === status.INVALID_ARGUMENT`

const LOADER_OPTIONS = { keepCase: true, longs: Number, enums: String, defaults: true, oneofs: true };

let service; // loaded once per process, on first use

function crossModalService() {
  if (!service) {
    const definition = protoLoader.loadSync(PROTO_FILE, { ...LOADER_OPTIONS, includeDirs: [PROTO_ROOT] });
    service = grpc.loadPackageDefinition(definition).crossmodal.v1.CrossModal;
  }
  return service;
}

/** An Item message from a string (a text), a Buffer/Uint8Array (an encoded image) or {image}/{text}. */
export function makeItem(value) {
  if (typeof value === "string") return { text: value };
  if (Buffer.isBuffer(value)) return { image: value };
  if (value instanceof Uint8Array) return { image: Buffer.from(value.buffer, value.byteOffset, value.byteLength) };
  if (value && typeof value === "object") {
    if (typeof value.text === "string" && value.image === undefined) return { text: value.text };
    if (value.image instanceof Uint8Array && value.text === undefined) return makeItem(value.image);
  }
  throw new TypeError(
    "an item is a string (text), a Buffer (encoded image), {text: string} or {image: Buffer}; got " +
      Object.prototype.toString.call(value),
  );
}

/** An image item read from a file (the Python client's Path items). */
export function imageFile(path) {
  return { image: readFileSync(path) };
}

function items(values) {
  if (!Array.isArray(values)) throw new TypeError("items must be an array");
  return values.map(makeItem);
}

function modelSpec({ model = "", version = 0 } = {}) {
  return { name: model, version: Number(version) };
}

function credentials({ tls, rootCert, clientCert, clientKey }) {
  if (!(tls || rootCert || clientCert || clientKey)) return grpc.credentials.createInsecure();
  // Without rootCert the system's trusted CAs are used; clientKey + clientCert make it mTLS.
  return grpc.credentials.createSsl(rootCert ?? null, clientKey ?? null, clientCert ?? null);
}

export class CrossModalClient {
  /**
   * @param {string} address host:port of the server
   * @param {object} [options]
   * @param {number} [options.timeoutMs=60000] deadline of each call (0 or null: none)
   * @param {string} [options.token] bearer token, sent as `authorization: Bearer <token>`
   * @param {boolean} [options.tls] TLS with the system's trusted CAs (implied by any PEM below)
   * @param {Buffer} [options.rootCert] PEM of the CA that signed the server's certificate
   * @param {Buffer} [options.clientCert] PEM client certificate chain, for mTLS
   * @param {Buffer} [options.clientKey] PEM client private key, for mTLS
   * @param {number} [options.maxMessageBytes] send/receive limit (default 64 MiB, as the server's)
   */
  constructor(address = "127.0.0.1:8001", options = {}) {
    const { timeoutMs = 60_000, token, maxMessageBytes = DEFAULT_MESSAGE_BYTES } = options;
    const Service = crossModalService();
    this.stub = new Service(address, credentials(options), {
      "grpc.max_receive_message_length": maxMessageBytes,
      "grpc.max_send_message_length": maxMessageBytes,
    });
    this.timeoutMs = timeoutMs;
    this.metadata = new grpc.Metadata();
    if (token) this.metadata.set("authorization", `Bearer ${token}`);
  }

  /** Resolves once the channel is connected (rejects after timeoutMs). */
  waitForReady(timeoutMs = 30_000) {
    return new Promise((resolvePromise, reject) => {
      this.stub.waitForReady(Date.now() + timeoutMs, (error) => (error ? reject(error) : resolvePromise()));
    });
  }

  /** Embeddings of images and texts, in order: {embeddings: [{values}], texts: [TextResult], model}. */
  encode(values, { model, version } = {}) {
    return this.#call("Encode", () => ({ model: modelSpec({ model, version }), items: items(values) }));
  }

  /** Cosine similarity of queries x candidates (row-major) and per-row softmax probabilities. */
  compare(queries, candidates, { model, version } = {}) {
    return this.#call("Compare", () => ({
      model: modelSpec({ model, version }),
      queries: items(queries),
      candidates: items(candidates),
    }));
  }

  /** Zero-shot classification of each item against labels, best first; topK 0 = every label. */
  classify(values, labels, { promptTemplate = "", topK = 0, model, version } = {}) {
    return this.#call("Classify", () => ({
      model: modelSpec({ model, version }),
      items: items(values),
      labels: [...labels],
      prompt_template: promptTemplate,
      top_k: topK,
    }));
  }

  /** Chinese -> English n-best translation; 0 means the model's default for each setting. */
  translate(texts, { numBeams = 0, numHypotheses = 0, maxLength = 0, lengthPenalty = 0, model, version } = {}) {
    return this.#call("Translate", () => ({
      model: modelSpec({ model, version }),
      texts: [...texts],
      num_beams: numBeams,
      num_hypotheses: numHypotheses,
      max_length: maxLength,
      length_penalty: lengthPenalty,
    }));
  }

  /** Every model and pipeline of the repository, each version with its state. */
  repositoryIndex({ readyOnly = false } = {}) {
    return this.#call("RepositoryIndex", () => ({ ready_only: readyOnly }));
  }

  /** Loads (or reloads) a model folder (servers in explicit model-control mode only). */
  loadModel(name) {
    return this.#call("LoadModel", () => ({ name }));
  }

  /** Unloads a model once its in-flight calls have finished (explicit mode only). */
  unloadModel(name) {
    return this.#call("UnloadModel", () => ({ name }));
  }

  close() {
    this.stub.close();
  }

  // The request is built inside the promise, so a bad argument rejects like a failed call instead of
  // throwing synchronously from a method that otherwise always returns a promise.
  #call(method, buildRequest) {
    return new Promise((resolvePromise, reject) => {
      const request = buildRequest();
      const options = this.timeoutMs ? { deadline: Date.now() + this.timeoutMs } : {};
      this.stub[method](request, this.metadata, options, (error, response) =>
        error ? reject(error) : resolvePromise(response),
      );
    });
  }
}
