//! A throwaway PKI for TLS tests (rcgen): a CA, a server certificate for `localhost` and
//! `127.0.0.1` and a client certificate it signed, and an unrelated CA, as PEM files in a
//! temp directory removed on drop. The files are world-readable: a private RabbitMQ node
//! reads them as the `rabbitmq` user.

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose,
};
use std::path::{Path, PathBuf};

/// PEM files of a test CA and the certificates it signed.
#[derive(Debug)]
pub struct TestPki {
    dir: PathBuf,
}

impl TestPki {
    /// Generates the CA, the server and client certificates and another CA.
    pub fn generate() -> TestPki {
        let dir = std::env::temp_dir().join(format!(
            "jobfleet-pki-{}",
            &uuid::Uuid::new_v4().simple().to_string()[..8]
        ));
        std::fs::create_dir_all(&dir).expect("pki dir");
        let pki = TestPki { dir };
        let ca = certificate_authority("jobfleet test CA");
        pki.write("ca.pem", &ca.pem());
        let other = certificate_authority("some other CA");
        pki.write("other-ca.pem", &other.pem());
        let (server, server_key) = leaf(
            &ca,
            "localhost",
            &["localhost", "127.0.0.1"],
            ExtendedKeyUsagePurpose::ServerAuth,
        );
        pki.write("server.pem", &server);
        pki.write("server.key", &server_key);
        let (client, client_key) = leaf(&ca, "jobfleet-client", &[], ExtendedKeyUsagePurpose::ClientAuth);
        pki.write("client.pem", &client);
        pki.write("client.key", &client_key);
        pki
    }

    fn write(&self, name: &str, pem: &str) {
        std::fs::write(self.dir.join(name), pem).expect("pem file");
    }

    /// The directory of the files (for files a test makes on purpose, e.g. a broken one).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The CA certificate.
    pub fn ca(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }

    /// A CA that signed nothing here.
    pub fn other_ca(&self) -> PathBuf {
        self.dir.join("other-ca.pem")
    }

    /// The server certificate (`localhost`, `127.0.0.1`).
    pub fn server_cert(&self) -> PathBuf {
        self.dir.join("server.pem")
    }

    /// The server certificate's key.
    pub fn server_key(&self) -> PathBuf {
        self.dir.join("server.key")
    }

    /// The client certificate.
    pub fn client_cert(&self) -> PathBuf {
        self.dir.join("client.pem")
    }

    /// The client certificate's key.
    pub fn client_key(&self) -> PathBuf {
        self.dir.join("client.key")
    }

    /// A `[tls]` table that trusts `ca` and presents the client certificate.
    pub fn tls_toml(&self, ca: &Path) -> String {
        format!(
            "[tls]\nca_file = {:?}\ncert_file = {:?}\nkey_file = {:?}\n",
            ca,
            self.client_cert(),
            self.client_key()
        )
    }

    /// An `[https]` table with the server certificate.
    pub fn https_toml(&self) -> String {
        format!(
            "[https]\ncert_file = {:?}\nkey_file = {:?}\n",
            self.server_cert(),
            self.server_key()
        )
    }
}

impl Drop for TestPki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn certificate_authority(name: &str) -> CertifiedIssuer<'static, KeyPair> {
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    CertifiedIssuer::self_signed(params, KeyPair::generate().expect("CA key")).expect("CA certificate")
}

/// A certificate for `names` signed by `ca`, and its key, both PEM.
fn leaf(
    ca: &CertifiedIssuer<'static, KeyPair>,
    common_name: &str,
    names: &[&str],
    usage: ExtendedKeyUsagePurpose,
) -> (String, String) {
    let names: Vec<String> = names.iter().map(|name| name.to_string()).collect();
    let mut params = CertificateParams::new(names).expect("certificate params");
    params.distinguished_name.push(DnType::CommonName, common_name);
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![usage];
    let key = KeyPair::generate().expect("key");
    let certificate = params.signed_by(&key, ca).expect("signed certificate");
    (certificate.pem(), key.serialize_pem())
}
