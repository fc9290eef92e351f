/**
 * The schema library for every input the service parses. `zod/mini` keeps each Lambda bundle small
 * (about 20 KB against about 90 KB for classic zod); English messages are loaded once here.
 */
import { en } from 'zod/locales';
import * as z from 'zod/mini';

z.config(en());

export { z };
