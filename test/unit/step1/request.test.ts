import { describe, expect, it } from 'vitest';
import { decodeFormComponent, parseKnockRequest } from './knock-request.js';
import { knockRequest } from '../packet/craft.js';

const PATH = '/step-1-k7Qz';
function parse(text: string) {
  const bytes = Buffer.from(text, 'latin1');
  return parseKnockRequest(bytes, 0, bytes.length, PATH);
}
function reason(text: string): string | undefined {
  const parsed = parse(text);
  return parsed.ok ? undefined : parsed.reason;
}

describe('step-1 HTTP request', () => {
  it('accepts a curl -d knock and returns its fields', () => {
    expect(parse(knockRequest(PATH, 'app=openvpn&access_key=K1-abc'))).toEqual({ ok: true, fields: { app: 'openvpn', accessKey: 'K1-abc' } });
  });

  it('takes `otp`, or `token` as its alias, and percent-decodes values as UTF-8', () => {
    expect(parse(knockRequest(PATH, 'app=ssh&access_key=a%2Bb+c%C3%A9&token=123456'))).toEqual({
      ok: true,
      fields: { app: 'ssh', accessKey: 'a+b cé', otp: '123456' },
    });
    expect(parse(knockRequest(PATH, 'otp=000111&app=ssh&access_key=k'))).toMatchObject({ fields: { otp: '000111' } });
  });

  it('ignores unknown fields and accepts a charset parameter and HTTP/1.0', () => {
    const text = `POST ${PATH} HTTP/1.0\r\nContent-Type: application/x-www-form-urlencoded; charset=utf-8\r\ncontent-length: 30\r\n\r\napp=a&access_key=k&submit=yes!`;
    expect(parse(text)).toEqual({ ok: true, fields: { app: 'a', accessKey: 'k' } });
  });

  it.each<[string, string, string]>([
    ['GET', knockRequest(PATH, 'app=a&access_key=k').replace('POST', 'GET'), 'not-post'],
    ['GET carrying "POST /path " in a header', `GET / HTTP/1.1\r\nX-A: POST ${PATH} HTTP/1.1\r\nContent-Length: 0\r\n\r\n`, 'not-post'],
    ['lowercase method', knockRequest(PATH, 'app=a&access_key=k').replace('POST', 'post'), 'not-post'],
    ['wrong path', knockRequest('/step-1-wrong', 'app=a&access_key=k'), 'bad-path'],
    ['prefix of the path', knockRequest(PATH.slice(0, -1), 'app=a&access_key=k'), 'bad-path'],
    ['path with a suffix', knockRequest(`${PATH}x`, 'app=a&access_key=k'), 'bad-path'],
    ['path with a query string', knockRequest(`${PATH}?a=b`, 'app=a&access_key=k'), 'bad-path'],
    ['path in other case', knockRequest(PATH.toUpperCase(), 'app=a&access_key=k'), 'bad-path'],
    ['absolute-form target', knockRequest(`http://gw${PATH}`, 'app=a&access_key=k'), 'bad-path'],
    ['binary junk', '\x16\x03\x01\x02\x00\x01\x00', 'not-http'],
    ['HTTP/2.0 version', knockRequest(PATH, 'app=a&access_key=k').replace('HTTP/1.1', 'HTTP/2.0'), 'not-http'],
    ['request line only, no CRLF', `POST ${PATH} HTTP/1.1`, 'incomplete'],
    ['half a request line', 'POST /st', 'incomplete'],
    ['headers without their end', `POST ${PATH} HTTP/1.1\r\nHost: x\r\n`, 'incomplete'],
    ['body shorter than Content-Length (split over two segments)', knockRequest(PATH, 'app=a&access_key=k').slice(0, -3), 'incomplete'],
    ['body longer than Content-Length', `${knockRequest(PATH, 'app=a&access_key=k')}&x=1`, 'length-mismatch'],
    ['Content-Length lies high', knockRequest(PATH, 'app=a&access_key=k').replace('Content-Length: 18', 'Content-Length: 99'), 'incomplete'],
    ['Content-Length lies low', knockRequest(PATH, 'app=a&access_key=k').replace('Content-Length: 18', 'Content-Length: 5'), 'length-mismatch'],
    ['no Content-Length', `POST ${PATH} HTTP/1.1\r\nContent-Type: application/x-www-form-urlencoded\r\n\r\napp=a&access_key=k`, 'no-content-length'],
    ['two Content-Length headers', knockRequest(PATH, 'app=a&access_key=k', 'Content-Length: 18\r\n'), 'bad-header'],
    ['signed Content-Length', knockRequest(PATH, 'app=a&access_key=k').replace('Content-Length: 18', 'Content-Length: +18'), 'bad-header'],
    ['chunked', knockRequest(PATH, 'app=a&access_key=k', 'Transfer-Encoding: chunked\r\n'), 'bad-header'],
    ['folded header', knockRequest(PATH, 'app=a&access_key=k', 'X-A: 1\r\n  more\r\n'), 'bad-header'],
    ['bare LF header line', knockRequest(PATH, 'app=a&access_key=k', 'X-A: 1\nX-B: 2\r\n'), 'bad-header'],
    ['header without colon', knockRequest(PATH, 'app=a&access_key=k', 'Bogus\r\n'), 'bad-header'],
    ['JSON body', knockRequest(PATH, '{"app":"a"}').replace('application/x-www-form-urlencoded', 'application/json'), 'bad-content-type'],
    ['no Content-Type', `POST ${PATH} HTTP/1.1\r\nContent-Length: 18\r\n\r\napp=a&access_key=k`, 'bad-content-type'],
    ['empty body', knockRequest(PATH, ''), 'bad-body'],
    ['no access_key', knockRequest(PATH, 'app=a'), 'bad-body'],
    ['empty access_key', knockRequest(PATH, 'app=a&access_key='), 'bad-body'],
    ['duplicate access_key', knockRequest(PATH, 'app=a&access_key=k&access_key=j'), 'bad-body'],
    ['otp and token both', knockRequest(PATH, 'app=a&access_key=k&otp=1&token=2'), 'bad-body'],
    ['field without =', knockRequest(PATH, 'app=a&access_key'), 'bad-body'],
    ['bad percent escape', knockRequest(PATH, 'app=a&access_key=%zz'), 'bad-body'],
    ['truncated percent escape', knockRequest(PATH, 'app=a&access_key=k%2'), 'bad-body'],
    ['invalid UTF-8', knockRequest(PATH, 'app=a&access_key=%C3%28'), 'bad-body'],
    ['oversize', knockRequest(PATH, `app=a&access_key=${'k'.repeat(2100)}`), 'too-large'],
  ])('%s → %s', (_name, text, expected) => {
    expect(reason(text)).toBe(expected);
  });
});

describe('decodeFormComponent', () => {
  it('decodes + and %XX, and passes plain text through', () => {
    expect(decodeFormComponent('plain-text_1.~')).toBe('plain-text_1.~');
    expect(decodeFormComponent('a+b%20c%26d%3D')).toBe('a b c&d=');
    expect(decodeFormComponent('%e2%82%ac')).toBe('€');
  });
});
