// ref_ids.mjs — reference token ids from @lenml/tokenizers (a port of transformers.js, an
// implementation independent of ours), for tests/mpi/test_tokenize_ref.sh.
//
//   node ref_ids.mjs LENML_DIR TOKENIZER_JSON TOKENIZER_CONFIG_JSON INPUT [--bos]
//
// LENML_DIR is the unpacked @lenml/tokenizers package (its dist/main.mjs has no
// dependencies, so no `npm install` is needed). The library wants both tokenizer.json and
// tokenizer_config.json (the config names the tokenizer class and its BOS/EOS handling).
// INPUT is read as UTF-8 and encoded whole; ids go to stdout on one line, space-separated,
// as `shardpress tokenize --ids` prints them. Without --bos special tokens are not added
// (shardpress tokenize --no-bos); with it they are (the tokenizer's post-processor, plain
// shardpress tokenize).
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { pathToFileURL } from "node:url";

const [lenmlDir, tokJson, tokConfig, input, ...rest] = process.argv.slice(2);
if (!input) {
  console.error("usage: node ref_ids.mjs LENML_DIR TOKENIZER_JSON TOKENIZER_CONFIG_JSON INPUT [--bos]");
  process.exit(2);
}
const { TokenizerLoader } = await import(pathToFileURL(join(lenmlDir, "dist", "main.mjs")).href);
const tokenizer = TokenizerLoader.fromPreTrained({
  tokenizerJSON: JSON.parse(readFileSync(tokJson, "utf8")),
  tokenizerConfig: JSON.parse(readFileSync(tokConfig, "utf8")),
});
const text = readFileSync(input, "utf8");
const ids = tokenizer.encode(text, { add_special_tokens: rest.includes("--bos") });
process.stdout.write(ids.join(" ") + "\n");
