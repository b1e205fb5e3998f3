import assert from "node:assert/strict";
import { afterEach, describe, it } from "node:test";

import { browserTools, cutText } from "../dist/index.js";

const EMOJI = "\u{1F600}"; // two UTF-16 units, one code point

function wellFormed(text) {
  return !/[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/.test(text);
}

function tool(name) {
  return browserTools({ only: [name] })[0];
}

describe("the catalog's text tools cut on code points", () => {
  const saved = {};
  for (const key of ["document", "location", "window"]) saved[key] = Object.getOwnPropertyDescriptor(globalThis, key);
  afterEach(() => {
    for (const [key, descriptor] of Object.entries(saved)) {
      if (descriptor) Object.defineProperty(globalThis, key, descriptor);
      else delete globalThis[key];
    }
  });

  function page(text) {
    globalThis.document = { title: "t", body: { innerText: text }, querySelectorAll: () => [{ tagName: "P", innerText: text }] };
    globalThis.location = { href: "https://example.test/" };
    globalThis.window = { getSelection: () => ({ toString: () => text }) };
  }

  it("cutText counts code points and never halves a pair", () => {
    assert.deepEqual(cutText(`ab${EMOJI}cd`, 3), { text: `ab${EMOJI}`, truncated: true });
    assert.deepEqual(cutText(`ab${EMOJI}cd`, 2), { text: "ab", truncated: true });
    assert.deepEqual(cutText(`ab${EMOJI}`, 3), { text: `ab${EMOJI}`, truncated: false });
    assert.deepEqual(cutText("abc", 10), { text: "abc", truncated: false });
    assert.deepEqual(cutText("abc", 0), { text: "", truncated: true });
    // A surrogate the page already had alone becomes U+FFFD.
    assert.deepEqual(cutText("a\uD83Db", 10), { text: "a\uFFFDb", truncated: false });
  });

  it("read_page cuts at every length without splitting an emoji", async () => {
    page(EMOJI.repeat(50));
    const readPage = tool("read_page");
    for (let max = 1; max <= 60; max++) {
      const result = await readPage.handler({ max_chars: max }, {});
      assert.ok(wellFormed(result.text), `max_chars ${max}`);
      assert.equal([...result.text].length, Math.min(max, 50));
      assert.equal(result.truncated, max < 50);
    }
  });

  it("query_selector's match text and get_selection stay well formed", async () => {
    page(`x${EMOJI.repeat(2500)}`);
    const found = await tool("query_selector").handler({ selector: "p" }, {});
    assert.equal(found.count, 1);
    assert.ok(wellFormed(found.matches[0].text));
    assert.equal([...found.matches[0].text].length, 2000);
    page(`half \uD83D`);
    assert.deepEqual(await tool("get_selection").handler({}, {}), { text: "half \uFFFD" });
  });
});
