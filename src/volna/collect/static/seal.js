/*
 * volna: seal a respondent's answers to the researchers' public key, in the browser,
 * before anything is sent. Byte for byte the envelope of volna.collect.crypto.seal:
 *
 *   version (1) | key id (8) | ephemeral P-256 point (65) | nonce (12) | ciphertext + tag
 *
 * ECDH (P-256, a fresh ephemeral key per submission) -> HKDF-SHA256 (no salt; info =
 * "volna seal v1" | version | key id | ephemeral point) -> AES-256-GCM with the header
 * as associated data. The plaintext is padded inside the encryption (4-byte big-endian
 * length, then zeros) to the smallest bucket that holds it, so the envelope's length
 * tells only the bucket.
 *
 * Plain ES2017, no dependencies, nothing fetched: WebCrypto only.
 *   globalThis.volnaSeal(browserKey, plaintext) -> Promise<Uint8Array>
 *   globalThis.volnaBase64url(bytes) -> string
 */
(function (root) {
  "use strict";

  var VERSION = 1;
  var BUCKETS = [1024, 4096, 16384, 65536];
  var LENGTH = 4;
  var MAX_PLAINTEXT = BUCKETS[BUCKETS.length - 1] - LENGTH;
  var INFO = "volna seal v1";
  var POINT = 65;

  function base64url(bytes) {
    var text = "";
    for (var i = 0; i < bytes.length; i++) {
      text += String.fromCharCode(bytes[i]);
    }
    return btoa(text).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  }

  function fromBase64url(text) {
    var b64 = String(text).trim().replace(/-/g, "+").replace(/_/g, "/");
    while (b64.length % 4) {
      b64 += "=";
    }
    var binary = atob(b64);
    var out = new Uint8Array(binary.length);
    for (var i = 0; i < binary.length; i++) {
      out[i] = binary.charCodeAt(i);
    }
    return out;
  }

  function concat(parts) {
    var size = 0;
    parts.forEach(function (p) { size += p.length; });
    var out = new Uint8Array(size);
    var at = 0;
    parts.forEach(function (p) { out.set(p, at); at += p.length; });
    return out;
  }

  function pad(plaintext) {
    var size = plaintext.length + LENGTH;
    for (var i = 0; i < BUCKETS.length; i++) {
      if (size <= BUCKETS[i]) {
        var out = new Uint8Array(BUCKETS[i]); // zero-filled
        var n = plaintext.length;
        out[0] = (n >>> 24) & 255;
        out[1] = (n >>> 16) & 255;
        out[2] = (n >>> 8) & 255;
        out[3] = n & 255;
        out.set(plaintext, LENGTH);
        return out;
      }
    }
    throw new Error("the answers are " + plaintext.length + " bytes, more than the " +
      MAX_PLAINTEXT + " that can be sealed");
  }

  async function seal(browserKey, plaintext) {
    var subtle = root.crypto && root.crypto.subtle;
    if (!subtle) {
      throw new Error("WebCrypto is not available (the page must be served over https or onion)");
    }
    if (!(plaintext instanceof Uint8Array)) {
      throw new TypeError("volnaSeal: the plaintext must be a Uint8Array");
    }
    var point = fromBase64url(browserKey);
    if (point.length !== POINT || point[0] !== 4) {
      throw new Error("volnaSeal: not an uncompressed P-256 public key");
    }
    var padded = pad(plaintext);
    var curve = { name: "ECDH", namedCurve: "P-256" };
    var recipient = await subtle.importKey("raw", point, curve, false, []);
    var keyId = new Uint8Array(await subtle.digest("SHA-256", point)).slice(0, 8);
    var ephemeral = await subtle.generateKey(curve, false, ["deriveBits"]);
    var ephemeralPoint = new Uint8Array(await subtle.exportKey("raw", ephemeral.publicKey));
    var nonce = root.crypto.getRandomValues(new Uint8Array(12));
    var bound = concat([new Uint8Array([VERSION]), keyId, ephemeralPoint]);
    var header = concat([bound, nonce]);
    var shared = await subtle.deriveBits(
      { name: "ECDH", public: recipient }, ephemeral.privateKey, 256);
    var hkdfKey = await subtle.importKey("raw", shared, "HKDF", false, ["deriveKey"]);
    var info = concat([new TextEncoder().encode(INFO), bound]);
    var aesKey = await subtle.deriveKey(
      { name: "HKDF", hash: "SHA-256", salt: new Uint8Array(0), info: info },
      hkdfKey, { name: "AES-GCM", length: 256 }, false, ["encrypt"]);
    var body = new Uint8Array(await subtle.encrypt(
      { name: "AES-GCM", iv: nonce, additionalData: header, tagLength: 128 }, aesKey, padded));
    return concat([header, body]);
  }

  root.volnaSeal = seal;
  root.volnaBase64url = base64url;
})(typeof globalThis !== "undefined" ? globalThis : self);
