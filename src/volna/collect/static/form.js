/* volna web questionnaire: live skip logic, the same checks as the server, sealing.
 *
 * Plain ES2017, no dependencies, no inline code (the page's CSP forbids it).
 * Skip logic: every question carries its relevance condition as a JSON tree
 * (compiled on the server from the questionnaire's XLSForm expressions) and this
 * file evaluates it with the semantics of volna.questionnaire.expressions: null
 * answers, NaN, '' for "unanswered", dates as days, XPath comparisons.
 * Sealing: the answers become the JSON the server would have sealed, are sealed
 * in the browser with volnaSeal (seal.js) and only the envelope is posted.
 * Without WebCrypto (a page served over plain http) the form posts as without
 * JavaScript, and the server seals on arrival.
 */
(function () {
  "use strict";

  // ------------------------------------------------------------ expressions

  var NUMERIC = /^\s*(-?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+))\s*$/;
  var DAY = 86400000;

  function parseDate(text) {
    if (typeof text !== "string" || !/^[0-9]{4}-[0-9]{2}-[0-9]{2}$/.test(text)) return null;
    var y = +text.slice(0, 4), m = +text.slice(5, 7), d = +text.slice(8, 10);
    var t = Date.UTC(y, m - 1, d);
    var back = new Date(t);
    if (back.getUTCFullYear() !== y || back.getUTCMonth() !== m - 1 || back.getUTCDate() !== d) {
      return null;
    }
    return Math.round(t / DAY);
  }

  function dateText(days) {
    return new Date(days * DAY).toISOString().slice(0, 10);
  }

  function formatNumber(x) {
    if (isNaN(x)) return "NaN";
    if (x === Infinity) return "Infinity";
    if (x === -Infinity) return "-Infinity";
    if (x === 0) return "0";
    return String(x);
  }

  function V(t, v, c) {
    return { t: t, v: v, c: !!c };
  }

  function toNumber(x) {
    var v = x.v;
    if (x.t === "number") return V("number", v === null ? NaN : v, x.c);
    if (x.t === "string") {
      if (v === null) return V("number", NaN, x.c);
      var m = NUMERIC.exec(v);
      return V("number", m ? parseFloat(m[1]) : NaN, x.c);
    }
    if (x.t === "boolean") return V("number", v ? 1 : 0, x.c);
    return V("number", v === null ? NaN : v, x.c);
  }

  function toText(x, keepNull) {
    var v = x.v;
    if (v === null) return V("string", keepNull ? null : "", x.c);
    if (x.t === "string") return V("string", v, x.c);
    if (x.t === "number") return V("string", formatNumber(v), x.c);
    if (x.t === "boolean") return V("string", v ? "true" : "false", x.c);
    return V("string", dateText(v), x.c);
  }

  function toBool(x) {
    var v = x.v;
    if (x.t === "boolean") return V("boolean", v, x.c);
    if (x.t === "number") return V("boolean", v !== null && !isNaN(v) && v !== 0, x.c);
    if (x.t === "string") return V("boolean", v !== null && v.length > 0, x.c);
    return V("boolean", v !== null, x.c);
  }

  function toDate(x) {
    if (x.t === "date") return x;
    if (x.t === "string") return V("date", x.v === null ? null : parseDate(x.v), x.c);
    var n = toNumber(x).v;
    return V("date", isFinite(n) ? Math.floor(n) : null, x.c);
  }

  function unify(a, b) {
    if (a === b) return a;
    if ((a === "number" && b === "boolean") || (a === "boolean" && b === "number")) return "number";
    return "string";
  }

  function convert(x, type) {
    if (x.t === type) return x;
    if (type === "number") return toNumber(x);
    if (type === "date") return toDate(x);
    return toText(x, true);
  }

  function cmp(op, a, b) {
    switch (op) {
      case "=": return a === b;
      case "!=": return a !== b;
      case "<": return a < b;
      case "<=": return a <= b;
      case ">": return a > b;
      default: return a >= b;
    }
  }

  function compareNumbers(op, a, b) {
    if (isNaN(a) || isNaN(b)) return op === "!=";
    return cmp(op, a, b);
  }

  function compare(op, left, right) {
    var eq = op === "=" || op === "!=";
    if (eq && (left.t === "boolean" || right.t === "boolean")) {
      return cmp(op, toBool(left).v, toBool(right).v);
    }
    var d, s, n;
    if ((left.t === "date" && right.t === "string") || (left.t === "string" && right.t === "date")) {
      d = left.t === "date" ? left : right;
      s = left.t === "date" ? right : left;
      if (eq && s.c && s.v === "") return op === "=" ? d.v === null : d.v !== null;
      if (eq && !s.c) return cmp(op, toText(left).v, toText(right).v);
      left = toDate(left);
      right = toDate(right);
    }
    if (left.t === "date" && right.t === "date") {
      if (left.v === null || right.v === null) return op === "!=";
      return cmp(op, left.v, right.v);
    }
    if (eq && left.t === "string" && right.t === "string") {
      return cmp(op, toText(left).v, toText(right).v);
    }
    if (eq && ((left.t === "number" && right.t === "string") ||
               (left.t === "string" && right.t === "number"))) {
      n = left.t === "number" ? left : right;
      s = left.t === "number" ? right : left;
      if (s.c && s.v === "") return op === "=" ? n.v === null : n.v !== null;
      if (!s.c && n.v === null) {
        var text = toText(s).v;
        return op === "=" ? text === "" : text !== "";
      }
    }
    return compareNumbers(op, toNumber(left).v, toNumber(right).v);
  }

  function roundAway(x, places) {
    if (isNaN(places)) return NaN;
    var k = Math.max(-400, Math.min(400, isFinite(places) ? Math.trunc(places) : 0));
    var scale = Math.pow(10, k);
    var r = Math.round(Math.abs(x) * scale) / scale;
    return x < 0 ? -r : r;
  }

  function evaluate(node, answers) {
    var kind = node[0];
    if (kind === "lit") {
      return typeof node[1] === "number" ? V("number", node[1], true) : V("string", node[1], true);
    }
    if (kind === "ref") {
      var value = Object.prototype.hasOwnProperty.call(answers, node[1]) ? answers[node[1]] : null;
      if (node[2] === "number") return V("number", value);
      if (node[2] === "date") return V("date", value);
      return V("string", value);
    }
    if (kind === "neg") return V("number", -toNumber(evaluate(node[1], answers)).v);
    if (kind === "call") return call(node[1], node[2], answers);
    var op = kind;
    if (op === "and" || op === "or") {
      var a = toBool(evaluate(node[1], answers)).v;
      var b = toBool(evaluate(node[2], answers)).v;
      return V("boolean", op === "and" ? a && b : a || b);
    }
    var left = evaluate(node[1], answers), right = evaluate(node[2], answers);
    if (op === "=" || op === "!=" || op === "<" || op === "<=" || op === ">" || op === ">=") {
      return V("boolean", compare(op, left, right));
    }
    var x = toNumber(left).v, y = toNumber(right).v;
    if (op === "+") return V("number", x + y);
    if (op === "-") return V("number", x - y);
    if (op === "*") return V("number", x * y);
    if (op === "div") return V("number", x / y);
    return V("number", x - y * Math.trunc(x / y)); // mod keeps the dividend's sign
  }

  function call(name, args, answers) {
    var v = args.map(function (arg) { return evaluate(arg, answers); });
    var words, code;
    switch (name) {
      case "true": return V("boolean", true, true);
      case "false": return V("boolean", false, true);
      case "today": {
        var now = new Date();
        return V("date", Math.round(Date.UTC(now.getFullYear(), now.getMonth(), now.getDate()) / DAY));
      }
      case "selected":
        words = " " + toText(v[0]).v + " ";
        code = toText(v[1]).v;
        if (code === "" || /\s/.test(code)) return V("boolean", false);
        return V("boolean", words.indexOf(" " + code + " ") >= 0);
      case "count-selected": {
        var found = toText(v[0]).v.match(/\S+/g);
        return V("number", found ? found.length : 0);
      }
      case "regex": {
        var subject = toText(v[0], true).v;
        if (subject === null) return V("boolean", false);
        try {
          return V("boolean", new RegExp(toText(v[1]).v, "u").test(subject));
        } catch (e) {
          return V("boolean", false);
        }
      }
      case "if": {
        var type = unify(v[1].t, v[2].t);
        return toBool(v[0]).v ? convert(v[1], type) : convert(v[2], type);
      }
      case "coalesce": {
        var t = unify(v[0].t, v[1].t);
        var first = convert(v[0], t), second = convert(v[1], t);
        var head = t === "string" && first.v === "" ? null : first.v;
        return V(t, head !== null ? head : second.v);
      }
      case "concat":
        return V("string", v.map(function (x) { return toText(x).v; }).join(""));
      case "date": return toDate(v[0]);
      case "not": return V("boolean", !toBool(v[0]).v);
      case "boolean": return toBool(v[0]);
      case "number": return toNumber(v[0]);
      case "string": return toText(v[0]);
      case "string-length": return V("number", Array.from(toText(v[0]).v).length);
      case "int": return V("number", Math.trunc(toNumber(v[0]).v));
      case "abs": return V("number", Math.abs(toNumber(v[0]).v));
      case "round":
        return V("number", roundAway(toNumber(v[0]).v, v.length > 1 ? toNumber(v[1]).v : 0));
      case "contains": return V("boolean", toText(v[0]).v.indexOf(toText(v[1]).v) >= 0);
      case "starts-with": return V("boolean", toText(v[0]).v.startsWith(toText(v[1]).v));
      case "ends-with": return V("boolean", toText(v[0]).v.endsWith(toText(v[1]).v));
      default: return V("boolean", false);
    }
  }

  function holds(tree, answers) {
    return toBool(evaluate(tree, answers)).v;
  }

  // The evaluator, for tests in a real browser.
  globalThis.volnaEvaluate = function (tree, answers) {
    var result = evaluate(tree, answers);
    if (result.t === "date" && result.v !== null) return dateText(result.v);
    if (result.t === "number" && !isFinite(result.v)) return formatNumber(result.v);
    return result.v;
  };

  // ------------------------------------------------------------ the form

  var form = typeof document !== "undefined" && document.getElementById("volna-form");
  if (!form) return;

  var INTEGER = /^-?[0-9]{1,15}$/;
  var DECIMAL = /^-?(?:[0-9]{1,15}(?:[.][0-9]{0,10})?|[.][0-9]{1,10})$/;
  var MARKUP = /<\s*[A-Za-z\/!?]/;
  var MAX_TEXT = 4000;
  var messages = JSON.parse(form.getAttribute("data-messages") || "{}");

  function parseTree(el) {
    var text = el.getAttribute("data-relevant");
    return text ? JSON.parse(text) : null;
  }

  var questions = Array.prototype.map.call(
    form.querySelectorAll(".question[data-name]"),
    function (el) {
      return {
        el: el,
        name: el.getAttribute("data-name"),
        rules: JSON.parse(el.getAttribute("data-rules")),
        tree: parseTree(el),
      };
    }
  );
  var conditional = Array.prototype.map.call(
    form.querySelectorAll("fieldset.section[data-relevant], .note[data-relevant]"),
    function (el) { return { el: el, tree: parseTree(el) }; }
  );

  function fields(name) {
    return Array.prototype.filter.call(form.elements, function (el) { return el.name === name; });
  }

  // What the respondent entered for one question, as canonical text.
  function raw(q) {
    var els = fields(q.name);
    var out = { chosen: [], value: "", other: "" };
    els.forEach(function (el) {
      if (el.type === "checkbox" || el.type === "radio") {
        if (el.checked) out.chosen.push(el.value);
      } else {
        out.value = el.value.trim();
      }
    });
    if (q.rules.type !== "multiple" && out.chosen.length) out.value = out.chosen[0];
    if (q.rules.type === "decimal") out.value = out.value.replace(",", ".");
    if (q.rules.type === "integer" || q.rules.type === "decimal") {
      out.value = out.value.replace(/^\+/, "");
    }
    if (q.rules.other) {
      var other = fields(q.rules.other[0])[0];
      out.other = other ? other.value.trim() : "";
    }
    return out;
  }

  // Answers typed as the expression language sees them; malformed ones are unanswered.
  function typed(q, r) {
    var type = q.rules.type;
    if (type === "multiple") {
      if (!r.chosen.length) return null;
      var codes = q.rules.codes || [];
      return codes.filter(function (c) { return r.chosen.indexOf(c) >= 0; }).join(" ");
    }
    if (r.value === "") return null;
    if (type === "integer") return INTEGER.test(r.value) ? parseFloat(r.value) : null;
    if (type === "decimal") return DECIMAL.test(r.value) ? parseFloat(r.value) : null;
    if (type === "date") return parseDate(r.value);
    return r.value;
  }

  function collect() {
    var raws = {};
    questions.forEach(function (q) { raws[q.name] = raw(q); });
    return raws;
  }

  function values(raws, asked) {
    var out = {};
    questions.forEach(function (q) {
      out[q.name] = asked[q.name] ? typed(q, raws[q.name]) : null;
    });
    return out;
  }

  // Which questions are asked: answers to skipped questions do not count, so the
  // conditions are evaluated again without them until nothing changes (as the server does).
  function askedQuestions(raws) {
    var asked = {};
    questions.forEach(function (q) { asked[q.name] = true; });
    for (var round = 0; round <= questions.length; round++) {
      var answers = values(raws, asked);
      var now = {}, changed = false;
      questions.forEach(function (q) {
        now[q.name] = !q.tree || holds(q.tree, answers);
        if (now[q.name] !== asked[q.name]) changed = true;
      });
      asked = now;
      if (!changed) break;
    }
    return asked;
  }

  function update() {
    var raws = collect();
    var asked = askedQuestions(raws);
    var answers = values(raws, asked);
    questions.forEach(function (q) { q.el.hidden = !asked[q.name]; });
    conditional.forEach(function (c) { c.el.hidden = !holds(c.tree, answers); });
    return { raws: raws, asked: asked, answers: answers };
  }

  function label(q, code) {
    var found = "";
    fields(q.name).forEach(function (el) {
      if (el.value === code && el.parentNode) found = el.parentNode.textContent.trim();
    });
    return found || code;
  }

  function fill(template, values) {
    return template.replace(/\{(\w+)\}/g, function (_, key) { return values[key]; });
  }

  function textProblem(text) {
    if (text.length > MAX_TEXT) return fill(messages.e_long, { limit: MAX_TEXT });
    if (MARKUP.test(text) || /[\u0000-\u0008\u000b\u000c\u000e-\u001f]/.test(text)) {
      return messages.e_markup;
    }
    return null;
  }

  function rangeProblem(rules, value) {
    var low = rules.min, high = rules.max;
    var x = rules.type === "date" ? value : parseFloat(value);
    var tooLow = low !== undefined && x < low;
    var tooHigh = high !== undefined && x > high;
    if (!tooLow && !tooHigh) return null;
    if (low !== undefined && high !== undefined) {
      return fill(messages.e_range, { minimum: low, maximum: high });
    }
    return low !== undefined ? fill(messages.e_min, { minimum: low })
      : fill(messages.e_max, { maximum: high });
  }

  // The rules of volna's validation for one asked question; messages in the page's language.
  function problems(q, r, answers) {
    var rules = q.rules, out = [];
    var answered = rules.type === "multiple" ? r.chosen.length > 0 : r.value !== "";
    var required = rules.required === true ||
      (rules.required && holds(rules.required, answers));
    if (required && !answered) out.push(rules.required_message || messages.e_required);
    if (rules.type === "multiple" || rules.codes) {
      var codes = rules.codes;
      var chosen = rules.type === "multiple" ? r.chosen : (r.value ? [r.value] : []);
      if (codes && chosen.some(function (c) { return codes.indexOf(c) < 0; })) {
        out.push(messages.e_code);
      }
      (rules.exclusive || []).forEach(function (code) {
        if (chosen.indexOf(code) >= 0 && chosen.length > 1) {
          out.push(fill(messages.e_exclusive, { label: label(q, code) }));
        }
      });
    } else if (rules.type === "country" && r.value) {
      var known = fields(q.name).some(function (el) {
        return Array.prototype.some.call(el.options || [], function (o) { return o.value === r.value; });
      });
      if (!known) out.push(messages.e_code);
    } else if (r.value) {
      if (rules.type === "integer" && !INTEGER.test(r.value)) out.push(messages.e_integer);
      else if (rules.type === "decimal" && !DECIMAL.test(r.value)) out.push(messages.e_decimal);
      else if (rules.type === "date" && parseDate(r.value) === null) out.push(messages.e_date);
      else if (rules.type === "text") {
        var bad = textProblem(r.value);
        if (bad) out.push(bad);
      }
      if (!out.length && (rules.min !== undefined || rules.max !== undefined)) {
        var range = rangeProblem(rules, r.value);
        if (range) out.push(range);
      }
    }
    if (!out.length && answered && rules.constraint && !holds(rules.constraint, answers)) {
      out.push(rules.constraint_message || messages.e_constraint);
    }
    if (rules.other && r.other) {
      var otherBad = textProblem(r.other);
      if (otherBad) out.push(otherBad);
      var picked = rules.type === "multiple" ? r.chosen : [r.value];
      if (picked.indexOf(rules.other[1]) < 0) {
        out.push(fill(messages.e_other, { label: label(q, rules.other[1]) }));
      }
    }
    return out;
  }

  function showProblems(q, list) {
    var box = document.getElementById("e-" + q.name);
    q.el.classList.toggle("invalid", list.length > 0);
    if (box) {
      box.textContent = list.join(" ");
      box.hidden = list.length === 0;
    }
  }

  function check(state) {
    var first = null;
    questions.forEach(function (q) {
      var list = state.asked[q.name] ? problems(q, state.raws[q.name], state.answers) : [];
      showProblems(q, list);
      if (list.length && !first) first = q;
    });
    var summary = document.getElementById("summary");
    if (summary) summary.hidden = true;
    return first;
  }

  // The canonical row, exactly as the server would build it from the same form.
  function row(state) {
    var out = {};
    questions.forEach(function (q) {
      var r = state.raws[q.name], asked = state.asked[q.name];
      if (q.rules.type === "multiple") {
        (q.rules.codes || []).forEach(function (code) {
          out[q.name + "/" + code] = asked && r.chosen.length
            ? (r.chosen.indexOf(code) >= 0 ? "1" : "0") : "";
        });
      } else {
        out[q.name] = asked ? r.value : "";
      }
      if (q.rules.other) out[q.rules.other[0]] = asked ? r.other : "";
    });
    return out;
  }

  // ------------------------------------------------------------ proof of work

  function hexBytes(hex) {
    var out = new Uint8Array(hex.length / 2);
    for (var i = 0; i < out.length; i++) out[i] = parseInt(hex.substr(i * 2, 2), 16);
    return out;
  }

  function zeroBits(bytes) {
    var count = 0;
    for (var i = 0; i < bytes.length; i++) {
      if (bytes[i] === 0) { count += 8; continue; }
      var b = bytes[i];
      while (!(b & 0x80)) { count++; b <<= 1; }
      return count;
    }
    return count;
  }

  async function proofOfWork(challengeHex, bits) {
    var challenge = hexBytes(challengeHex);
    var encoder = new TextEncoder();
    for (var n = 0; n < 1e9; n++) {
      var digits = encoder.encode(String(n));
      var data = new Uint8Array(challenge.length + digits.length);
      data.set(challenge);
      data.set(digits, challenge.length);
      var digest = new Uint8Array(await crypto.subtle.digest("SHA-256", data));
      if (zeroBits(digest) >= bits) return String(n);
    }
    return "";
  }

  // The puzzle, for tests in a real browser.
  globalThis.volnaProofOfWork = proofOfWork;

  // ------------------------------------------------------------ sending

  var canSeal = !!(globalThis.crypto && crypto.subtle && globalThis.volnaSeal &&
                   globalThis.fetch && globalThis.TextEncoder);
  var notice = document.getElementById("notice");
  var button = document.getElementById("submit");
  var powBits = parseInt(form.getAttribute("data-pow") || "0", 10);
  var proof = null;
  if (canSeal && powBits > 0) {
    proof = proofOfWork(form.getAttribute("data-challenge"), powBits).catch(function () { return ""; });
  }
  if (canSeal) {
    var jsNotice = document.getElementById("js-notice");
    if (jsNotice) jsNotice.hidden = false;
  }

  function say(text) {
    notice.textContent = text;
    notice.hidden = !text;
  }

  async function send(state) {
    var plain = JSON.stringify({ v: 1, lang: form.getAttribute("data-lang"), answers: row(state) });
    var envelope = await globalThis.volnaSeal(
      form.getAttribute("data-key"), new TextEncoder().encode(plain));
    var body = new URLSearchParams();
    body.set("token", fields("token")[0].value);
    body.set("lang", form.getAttribute("data-lang"));
    body.set("sealed", globalThis.volnaBase64url(envelope));
    body.set("website", fields("website")[0].value);
    body.set("pow", proof ? await proof : "");
    var response = await fetch("/sealed", {
      method: "POST",
      body: body,
      credentials: "omit",
      cache: "no-store",
      referrerPolicy: "no-referrer",
    });
    var answer = await response.json();
    if (response.ok && answer.ok) {
      window.location.assign(answer.next);
      return;
    }
    if (answer.token) fields("token")[0].value = answer.token;
    say(answer.error || form.getAttribute("data-failed"));
  }

  form.addEventListener("input", update);
  form.addEventListener("change", update);
  form.addEventListener("submit", function (event) {
    var state = update();
    var first = check(state);
    if (first) {
      event.preventDefault();
      first.el.scrollIntoView({ block: "center" });
      var focusable = first.el.querySelector("input, select, textarea");
      if (focusable) focusable.focus({ preventScroll: true });
      return;
    }
    if (!canSeal) return; // the server seals on arrival
    event.preventDefault();
    button.disabled = true;
    say(form.getAttribute("data-sending"));
    send(state).catch(function () {
      say(form.getAttribute("data-failed"));
    }).then(function () {
      button.disabled = false;
    });
  });
  update();
})();
