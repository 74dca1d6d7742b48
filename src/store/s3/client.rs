//! Building the S3 client: the credential chain (a `--profile` wins over
//! keys in the environment, as with the AWS CLI), region, endpoint,
//! path-style addressing, retries and timeouts, all in one place, so every
//! request of a run is made the same way.

use std::sync::Arc;
use std::time::Duration;

use aws_config::BehaviorVersion;
use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_credential_types::provider::ProvideCredentials;
use aws_sdk_s3::Client;
use aws_sdk_s3::config::{Region, RequestChecksumCalculation, ResponseChecksumValidation};
use aws_sdk_s3::error::DisplayErrorContext;

use super::{DEFAULT_REGION, S3Settings, S3Store};
use crate::store::counts::RequestCounter;
use crate::store::pace::Bandwidth;
use crate::store::{StoreError, StoreResult};

impl S3Store {
    /// Builds the client from the standard credential chain and `settings`,
    /// and checks that credentials can be found at all.
    ///
    /// # Errors
    /// [`StoreError::Fatal`] when no credentials can be found (naming the
    /// profile when one was given). Nothing is sent to the store yet.
    pub async fn connect(bucket: &str, settings: &S3Settings) -> StoreResult<Self> {
        let mut loader = aws_config::defaults(BehaviorVersion::latest());
        if let Some(profile) = &settings.profile {
            // A profile named on the command line wins over keys in the
            // environment, as with the AWS CLI: otherwise `--profile prod`
            // would quietly write with whatever AWS_ACCESS_KEY_ID is set.
            let from_profile = aws_config::profile::ProfileFileCredentialsProvider::builder()
                .profile_name(profile)
                .build();
            loader = loader.profile_name(profile).credentials_provider(from_profile);
        }
        if let Some(region) = &settings.region {
            loader = loader.region(Region::new(region.clone()));
        }
        if let Some(url) = &settings.endpoint_url {
            loader = loader.endpoint_url(url);
        }
        let sdk = loader.load().await;
        let region = sdk
            .region()
            .map(|r| r.to_string())
            .unwrap_or_else(|| DEFAULT_REGION.to_string());
        let endpoint = sdk.endpoint_url().map(str::to_string);
        let path_style = settings.path_style || endpoint.as_deref().is_some_and(is_local_endpoint);

        let provider = sdk
            .credentials_provider()
            .ok_or_else(|| StoreError::Fatal("no AWS credentials provider is configured".into()))?;
        provider.provide_credentials().await.map_err(|e| {
            tracing::debug!("credential chain: {}", DisplayErrorContext(&e));
            StoreError::Fatal(match &settings.profile {
                Some(profile) => format!(
                    "no usable AWS credentials for profile '{profile}': it is not in ~/.aws/config or ~/.aws/credentials (AWS_CONFIG_FILE, AWS_SHARED_CREDENTIALS_FILE) or has no keys (-vv shows what was tried)"
                ),
                None => "no usable AWS credentials: run 'aws configure', set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or pass --profile (-vv shows what was tried)"
                    .into(),
            })
        })?;

        let timeouts = (
            or_default(settings.connect_timeout, 10),
            or_default(settings.read_timeout, 120),
        );
        let counter = Arc::new(RequestCounter::default());
        let config = aws_sdk_s3::config::Builder::from(&sdk)
            .interceptor(super::count::Counting(counter.clone()))
            .region(Region::new(region.clone()))
            .force_path_style(path_style)
            .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
            .response_checksum_validation(ResponseChecksumValidation::WhenRequired)
            .retry_config(RetryConfig::standard().with_max_attempts(4))
            .retry_classifier(super::retry_after::RetryAfter)
            .timeout_config(
                TimeoutConfig::builder()
                    .connect_timeout(timeouts.0)
                    .read_timeout(timeouts.1)
                    .build(),
            )
            .build();
        tracing::debug!(bucket, region, ?endpoint, path_style, "S3 client ready");
        Ok(Self {
            client: Client::from_conf(config),
            bucket: bucket.to_string(),
            region,
            endpoint,
            profile: settings
                .profile
                .clone()
                .or_else(|| std::env::var("AWS_PROFILE").ok().filter(|p| !p.is_empty())),
            write: settings.write.clone(),
            bandwidth: settings.bandwidth.map(|l| Arc::new(Bandwidth::new(l))),
            timeouts,
            counter,
            versioning: tokio::sync::OnceCell::new(),
            lock_seen: Default::default(),
            copy_md5: Default::default(),
        })
    }
}

fn or_default(d: Duration, secs: u64) -> Duration {
    if d.is_zero() { Duration::from_secs(secs) } else { d }
}

/// Endpoints on this machine or given as an IP address cannot use
/// virtual-hosted (bucket-in-hostname) addressing.
fn is_local_endpoint(url: &str) -> bool {
    let host = url
        .split_once("://")
        .map_or(url, |(_, rest)| rest)
        .split(['/', '?'])
        .next()
        .unwrap_or("");
    let host = host.rsplit_once('@').map_or(host, |(_, h)| h);
    let host_only = if host.starts_with('[') {
        host.split(']')
            .next()
            .map(|h| h.trim_start_matches('['))
            .unwrap_or(host)
    } else {
        host.split(':').next().unwrap_or(host)
    };
    host_only == "localhost" || host_only.parse::<std::net::IpAddr>().is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_endpoints_use_path_style() {
        assert!(is_local_endpoint("http://127.0.0.1:9000"));
        assert!(is_local_endpoint("http://localhost:9000/"));
        assert!(is_local_endpoint("http://[::1]:9000"));
        assert!(is_local_endpoint("https://10.0.0.5"));
        assert!(!is_local_endpoint("https://s3.example.com"));
    }
}
