// The patient metadata vector of a model trained with `model.metadata`: the rules of
// dermai.core.metadata (Python), applied to the encoding embedded in the .tflite (its
// `metadata` document: fields, vocab, age_scale, max_age, unknown_values). Pure, no imports,
// so node and the browser run the same code; tests/e2e/test_ondevice_metadata.py checks it
// against Python on the same answers.

// A decimal number, as dermai.core.metadata.AGE_PATTERN (no hex, inf or digit separators).
const AGE_PATTERN = /^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$/;

/** A raw answer as the vocabulary holds it: trimmed, lower-case; '' for unknown. */
export function normalise(value, unknownValues) {
  const text = value === null || value === undefined ? '' : String(value).trim().toLowerCase();
  return unknownValues.includes(text) ? '' : text;
}

/** Years as a number, or null when unknown or implausible. */
export function parseAge(value, doc) {
  const text = normalise(value, doc.unknown_values);
  if (!AGE_PATTERN.test(text)) return null;
  const years = Number(text);
  return Number.isFinite(years) && years >= 0 && years <= doc.max_age ? years : null;
}

/** Whether `value` of `field` is used (not encoded as unknown). */
export function isKnown(doc, field, value) {
  if (field === 'age') return parseAge(value, doc) !== null;
  return doc.vocab[field].includes(normalise(value, doc.unknown_values));
}

/** The model's metadata input (Float32Array of doc.width) for {field: raw answer}; a field
 * not given is unknown. */
export function encodeMetadata(doc, answers = {}) {
  const out = new Float32Array(doc.width);
  let at = 0;
  for (const field of doc.fields) {
    const value = Object.prototype.hasOwnProperty.call(answers, field) ? answers[field] : null;
    if (field === 'age') {
      const years = parseAge(value, doc);
      if (years !== null) {
        out[at] = years / doc.age_scale;
        out[at + 1] = 1;
      }
      at += 2;
    } else {
      const values = doc.vocab[field];
      const v = normalise(value, doc.unknown_values);
      const slot = values.includes(v) ? values.indexOf(v) : values.length;
      out[at + slot] = 1;
      at += values.length + 1;
    }
  }
  if (at !== doc.width) throw new Error(`metadata encoding width ${doc.width} != ${at}`);
  return out;
}
