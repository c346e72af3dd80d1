// Lints the protocol documents with their reference tools: docs/asyncapi.yaml with the
// AsyncAPI parser (the specification's schema and its rules), docs/openapi.yaml against
// the OpenAPI 3.1 schema. Exits non-zero on any error or warning.
import { fileURLToPath } from "node:url";

import { Parser, fromFile } from "@asyncapi/parser";
import { Validator } from "@seriousme/openapi-schema-validator";

const docs = new URL("../../../docs/", import.meta.url);
let failed = false;

// Severity 0 is an error, 1 a warning; hints (2, 3) are style suggestions.
const parser = new Parser();
const asyncapi = fileURLToPath(new URL("asyncapi.yaml", docs));
const diagnostics = await fromFile(parser, asyncapi).validate();
for (const d of diagnostics.filter((d) => d.severity <= 1)) {
  failed = true;
  console.error(`asyncapi.yaml: ${d.code} at ${d.path.join(".")}: ${d.message}`);
}

// openapi.yaml references asyncapi.yaml's schemas by the relative path they are given.
const validator = new Validator();
await validator.addSpecRef(fileURLToPath(new URL("asyncapi.yaml", docs)), "./asyncapi.yaml");
const openapi = await validator.validate(fileURLToPath(new URL("openapi.yaml", docs)));
if (!openapi.valid) {
  failed = true;
  console.error("openapi.yaml:", JSON.stringify(openapi.errors, null, 2));
}

if (failed) {
  process.exit(1);
}
console.log("docs/asyncapi.yaml and docs/openapi.yaml: valid");
