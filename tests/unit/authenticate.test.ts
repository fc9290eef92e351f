import { tokenFromHeaders } from '../../lib/auth/authenticate.ts';

describe('reading the token from the request', () => {
  it('takes Authorization: Bearer in any case of the scheme', () => {
    expect(tokenFromHeaders({ authorization: 'Bearer abc.def.ghi' })).toBe('abc.def.ghi');
    expect(tokenFromHeaders({ authorization: 'bearer abc.def.ghi' })).toBe('abc.def.ghi');
  });

  it("takes the seed's auth_token header, with or without a Bearer prefix", () => {
    expect(tokenFromHeaders({ auth_token: 'abc.def.ghi' })).toBe('abc.def.ghi');
    expect(tokenFromHeaders({ auth_token: 'Bearer abc.def.ghi' })).toBe('abc.def.ghi');
  });

  it('prefers Authorization when both are sent', () => {
    expect(tokenFromHeaders({ authorization: 'Bearer one', auth_token: 'two' })).toBe('one');
  });

  it('tells a missing token (undefined) from a malformed header (empty)', () => {
    expect(tokenFromHeaders({})).toBeUndefined();
    expect(tokenFromHeaders(undefined as never)).toBeUndefined();
    expect(tokenFromHeaders({ authorization: 'Basic dXNlcjpwYXNz' })).toBe('');
    expect(tokenFromHeaders({ authorization: 'Bearer' })).toBe('');
    expect(tokenFromHeaders({ authorization: 'Bearer a b' })).toBe('');
  });
});
