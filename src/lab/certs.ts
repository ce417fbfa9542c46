/**
 * Test certificates made with the `openssl` CLI: CAs, leaf certificates signed by them
 * or self-signed, valid or expired, with DNS and IP Subject Alternative Names.
 */
import { execFileSync } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import net from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'

/** A PEM private key and certificate. */
export interface KeyPair {
  /** PEM-encoded private key (EC P-256 or RSA 2048, PKCS#8). */
  key: string
  /** PEM-encoded X.509 certificate. */
  cert: string
}

/** Options of {@link makeCertificate}. */
export interface CertificateOptions {
  /** Subject CN. */
  commonName: string
  /** Subject Alternative Names; IP literals become `IP:` entries, the rest `DNS:`. Default `[commonName]`. */
  altNames?: string[]
  /** Validity in days from now (it starts one hour ago to tolerate clock skew). Default 30. */
  days?: number
  /** Make a certificate whose validity ended yesterday (it started 30 days ago). Default false. */
  expired?: boolean
  /** The CA that signs it (from {@link makeCA}); self-signed when absent. */
  issuer?: KeyPair
  /** Key algorithm: `ec` (P-256, ECDSA signatures) or `rsa` (2048 bits). Default `ec`. */
  keyType?: 'ec' | 'rsa'
}

/**
 * Makes a server certificate for `commonName` and its alternative names.
 *
 * Expired certificates need a chosen start and end date, which `openssl x509` only offers
 * from OpenSSL 3.4 (`-not_before`); `openssl ca -startdate -enddate` has them in 3.0, so
 * every certificate goes through a throwaway `openssl ca` database in a temp dir.
 *
 * @returns a new key pair; the temp dir is removed before returning
 * @throws {Error} when the openssl CLI is missing or fails (its stderr is in the message)
 */
export function makeCertificate(opts: CertificateOptions): KeyPair {
  const names = opts.altNames ?? [opts.commonName]
  if (names.length === 0) throw new RangeError('altNames must not be empty: clients check the host name against SANs only')
  const now = Date.now()
  const day = 86_400_000
  const start = opts.expired ? now - 30 * day : now - 3_600_000
  const end = opts.expired ? now - day : now + (opts.days ?? 30) * day
  const san = names.map((n) => `${net.isIP(n) ? 'IP' : 'DNS'}:${n}`).join(',')
  return sign(opts.commonName, start, end, opts.issuer ? 'leaf' : 'self', san, opts.issuer, opts.keyType ?? 'ec')
}

/**
 * Makes a certificate authority that {@link makeCertificate} can use as `issuer` and
 * clients can trust through `ca`. Valid from one hour ago for 365 days.
 *
 * @param name subject CN, default `Portico Lab CA`
 * @throws {Error} when the openssl CLI is missing or fails
 */
export function makeCA(name = 'Portico Lab CA'): KeyPair {
  const now = Date.now()
  return sign(name, now - 3_600_000, now + 365 * 86_400_000, 'ca', undefined, undefined, 'ec')
}

const CONFIG = `
[ ca ]
default_ca = lab
[ lab ]
dir = .
database = index.txt
new_certs_dir = .
serial = serial
default_md = sha256
policy = any
unique_subject = no
copy_extensions = none
[ any ]
commonName = supplied
[ req ]
distinguished_name = dn
prompt = no
[ dn ]
CN = unused
[ ca_ext ]
basicConstraints = critical,CA:TRUE
keyUsage = critical,keyCertSign,cRLSign
subjectKeyIdentifier = hash
[ leaf ]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature,keyEncipherment
extendedKeyUsage = serverAuth,clientAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid,issuer
subjectAltName = $ENV::LAB_SAN
[ self ]
basicConstraints = critical,CA:FALSE
extendedKeyUsage = serverAuth,clientAuth
subjectKeyIdentifier = hash
subjectAltName = $ENV::LAB_SAN
`

/** ASN.1 GeneralizedTime as `openssl ca` wants it: YYYYMMDDHHMMSSZ. */
function asn1Time(ms: number): string {
  return new Date(ms).toISOString().replace(/[-:T]/g, '').replace(/\.\d+Z$/, 'Z')
}

function sign(cn: string, start: number, end: number, ext: 'ca' | 'leaf' | 'self', san: string | undefined, issuer: KeyPair | undefined, keyType: 'ec' | 'rsa'): KeyPair {
  const dir = mkdtempSync(join(tmpdir(), 'portico-certs-'))
  try {
    const run = (args: string[]): void => {
      try {
        execFileSync('openssl', args, { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, LAB_SAN: san ?? 'DNS:unused' } })
      } catch (err) {
        const stderr = (err as { stderr?: Buffer }).stderr?.toString().trim()
        throw new Error(`openssl ${args[0]} failed: ${stderr || (err as Error).message}`, { cause: err })
      }
    }
    writeFileSync(join(dir, 'openssl.cnf'), CONFIG)
    writeFileSync(join(dir, 'index.txt'), '')
    writeFileSync(join(dir, 'serial'), `${BigInt(now64()).toString(16).padStart(16, '0')}\n`)
    run(keyType === 'rsa'
      ? ['genpkey', '-algorithm', 'RSA', '-pkeyopt', 'rsa_keygen_bits:2048', '-out', 'key.pem']
      : ['genpkey', '-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256', '-out', 'key.pem'])
    run(['req', '-new', '-config', 'openssl.cnf', '-key', 'key.pem', '-subj', `/CN=${cn.replace(/[/=\\]/g, '\\$&')}`, '-out', 'csr.pem'])
    const signer = issuer
      ? (writeFileSync(join(dir, 'issuer.pem'), issuer.cert), writeFileSync(join(dir, 'issuer-key.pem'), issuer.key), ['-cert', 'issuer.pem', '-keyfile', 'issuer-key.pem'])
      : ['-selfsign', '-keyfile', 'key.pem']
    run([
      'ca', '-batch', '-notext', '-config', 'openssl.cnf', '-in', 'csr.pem', '-out', 'cert.pem',
      '-startdate', asn1Time(start), '-enddate', asn1Time(end), '-extensions', ext === 'ca' ? 'ca_ext' : ext, ...signer,
    ])
    return { key: readFileSync(join(dir, 'key.pem'), 'utf8'), cert: readFileSync(join(dir, 'cert.pem'), 'utf8') }
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
}

/** A serial number unlikely to repeat between certificates of one run (clients cache by issuer and serial). */
function now64(): bigint {
  return (BigInt(Date.now()) << 16n) | BigInt(Math.floor(Math.random() * 0xffff))
}
