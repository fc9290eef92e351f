import {
  DUMMY_HASH,
  hashPassword,
  OWASP_SCRYPT,
  parseHash,
  verifyPassword,
} from '../../lib/auth/passwords.ts';

const cheap = { logN: 10, r: 8, p: 1 };

describe('scrypt password hashes', () => {
  it('uses OWASP parameters by default and records them in a PHC string', async () => {
    const hash = await hashPassword('correct horse');
    expect(hash).toMatch(/^\$scrypt\$ln=17,r=8,p=1\$[A-Za-z0-9+/]{22}\$[A-Za-z0-9+/]{43}$/);
    expect(parseHash(hash)?.params).toEqual(OWASP_SCRYPT);
    expect(await verifyPassword('correct horse', hash)).toBe(true);
    expect(await verifyPassword('correct horse ', hash)).toBe(false);
  });

  it('salts every hash', async () => {
    expect(await hashPassword('same', cheap)).not.toBe(await hashPassword('same', cheap));
  });

  it('verifies with the parameters stored in the hash, not the current defaults', async () => {
    const hash = await hashPassword('pw', cheap);
    expect(hash.startsWith('$scrypt$ln=10,r=8,p=1$')).toBe(true);
    expect(await verifyPassword('pw', hash)).toBe(true);
  });

  it('never verifies a malformed or foreign hash', async () => {
    for (const bad of [
      '',
      'plain',
      '$argon2id$v=19$m=65536,t=3,p=4$abc$def',
      '$scrypt$ln=40,r=8,p=1$AAAA$AAAA',
    ]) {
      expect(await verifyPassword('pw', bad)).toBe(false);
    }
  });

  it('keeps a dummy hash with the real parameters, so unknown users cost the same as wrong passwords', async () => {
    expect(parseHash(DUMMY_HASH)?.params).toEqual(OWASP_SCRYPT);
    expect(parseHash(DUMMY_HASH)?.key.length).toBe(32);
    expect(await verifyPassword('avijeet@123', DUMMY_HASH)).toBe(false);
  });
});
