/**
 * The schema library for every input the service parses. `zod/mini` keeps each Lambda bundle small;
 * English messages are loaded once here. Import it as a namespace (`import * as z from …`): a
 * re-exported namespace object would defeat tree-shaking and pull all of zod into every bundle.
 */
import { en } from 'zod/locales';
import { config } from 'zod/mini';

config(en());

export * from 'zod/mini';
