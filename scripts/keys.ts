/**
 * JWT signing keysets, for deploying and rotating (see README, "Deploy"):
 *
 *   npm run keys -- generate > keys.json          a new keyset with one current key
 *   npm run keys -- rotate keys.json > next.json  a new current key; the old ones stay, public only
 *   npm run keys -- retire keys.json <kid>        drops a previous key once its tokens have expired
 *   npm run keys -- public keys.json > jwks.json  the public keys alone, for the verifying functions
 *
 * Output goes to stdout; store it as an SSM SecureString, never in the repository.
 */
import { readFileSync } from 'node:fs';
import { generateKeyset, generateSigningKey } from '../lib/auth/key-generation.ts';
import { type Keyset, parseKeyset, publicPart } from '../lib/auth/keys.ts';

const [command, file, kid] = process.argv.slice(2);
const read = (path: string | undefined): Keyset => {
  if (!path) throw new Error('name the keyset file');
  return parseKeyset(readFileSync(path, 'utf8'), path);
};

try {
  let keyset: Keyset;
  if (command === 'generate') keyset = await generateKeyset();
  else if (command === 'rotate') {
    const old = read(file);
    const next = await generateSigningKey();
    // Previous keys only verify: keep their public half, so the private one is gone for good.
    keyset = { current: next.kid, keys: [next, ...old.keys.map(publicPart)] };
  } else if (command === 'public') {
    const { keys } = read(file);
    process.stdout.write(`${JSON.stringify({ keys: keys.map(publicPart) })}\n`);
    process.exit(0);
  } else if (command === 'retire') {
    const old = read(file);
    if (!kid || kid === old.current) throw new Error('name a previous key (not the current one) to retire');
    keyset = { current: old.current, keys: old.keys.filter((key) => key.kid !== kid) };
  } else {
    throw new Error('usage: npm run keys -- generate | rotate <file> | retire <file> <kid> | public <file>');
  }
  process.stdout.write(`${JSON.stringify(keyset)}\n`);
} catch (error) {
  console.error(`error: ${(error as Error).message}`);
  process.exit(2);
}
