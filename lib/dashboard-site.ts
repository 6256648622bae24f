import { execFileSync } from 'node:child_process';
import { CfnOutput, DockerImage, Duration, Fn } from 'aws-cdk-lib';
import type { IHttpApi } from 'aws-cdk-lib/aws-apigatewayv2';
import {
  AllowedMethods,
  CachePolicy,
  Function as CloudFrontFunction,
  Distribution,
  FunctionCode,
  FunctionEventType,
  HeadersFrameOption,
  HeadersReferrerPolicy,
  HttpVersion,
  OriginProtocolPolicy,
  OriginRequestPolicy,
  PriceClass,
  ResponseHeadersPolicy,
  ViewerProtocolPolicy,
} from 'aws-cdk-lib/aws-cloudfront';
import { HttpOrigin, S3BucketOrigin } from 'aws-cdk-lib/aws-cloudfront-origins';
import { BlockPublicAccess, Bucket, BucketEncryption, ObjectOwnership } from 'aws-cdk-lib/aws-s3';
import { BucketDeployment, CacheControl, Source } from 'aws-cdk-lib/aws-s3-deployment';
import { Construct } from 'constructs';
import { CONTENT_SECURITY_POLICY, DASHBOARD_ROOT, viteBuildArguments } from '../dashboard/site';

export interface DashboardSiteProps {
  /** The HTTP API the page calls; CloudFront sends /v1/* to it, so page and API share one origin. */
  readonly api: IHttpApi;
}

/** Hashed file names change with their content: cached for good. The page itself is revalidated on every load. */
const ASSET_CACHE = [CacheControl.setPublic(), CacheControl.maxAge(Duration.days(365)), CacheControl.immutable()];

/**
 * The dashboard in AWS: its build in a private bucket, read by CloudFront through Origin Access Control,
 * and /v1/* passed through uncached to the HTTP API (keys in the Authorization header reach the API
 * function, which checks them). A viewer-request function answers page paths with index.html; API paths
 * never reach it, so the API's own 403/404 bodies pass through untouched.
 */
export class DashboardSite extends Construct {
  readonly bucket: Bucket;
  readonly logsBucket: Bucket;
  readonly distribution: Distribution;
  readonly deployments: BucketDeployment[];

  constructor(scope: Construct, id: string, props: DashboardSiteProps) {
    super(scope, id);

    // CloudFront standard logs are written with ACLs, hence object-writer ownership on this bucket only.
    this.logsBucket = new Bucket(this, 'Logs', {
      blockPublicAccess: BlockPublicAccess.BLOCK_ALL,
      encryption: BucketEncryption.S3_MANAGED,
      enforceSSL: true,
      objectOwnership: ObjectOwnership.OBJECT_WRITER,
      lifecycleRules: [{ expiration: Duration.days(90) }],
    });
    this.bucket = new Bucket(this, 'Assets', {
      blockPublicAccess: BlockPublicAccess.BLOCK_ALL,
      encryption: BucketEncryption.S3_MANAGED,
      enforceSSL: true,
      serverAccessLogsBucket: this.logsBucket,
      serverAccessLogsPrefix: 'assets/',
    });

    const headers = new ResponseHeadersPolicy(this, 'SecurityHeaders', {
      comment: 'Usage dashboard: CSP, HSTS, no framing, no sniffing, no referrer',
      securityHeadersBehavior: {
        contentSecurityPolicy: { contentSecurityPolicy: CONTENT_SECURITY_POLICY, override: true },
        strictTransportSecurity: { accessControlMaxAge: Duration.days(730), includeSubdomains: true, override: true },
        contentTypeOptions: { override: true },
        frameOptions: { frameOption: HeadersFrameOption.DENY, override: true },
        referrerPolicy: { referrerPolicy: HeadersReferrerPolicy.NO_REFERRER, override: true },
      },
    });
    const pagePaths = new CloudFrontFunction(this, 'PagePaths', {
      comment: 'Page paths (no file extension) are the single page: /index.html',
      code: FunctionCode.fromInline(
        "function handler(event) { var request = event.request; var last = request.uri.split('/').pop(); if (last.indexOf('.') === -1) request.uri = '/index.html'; return request; }",
      ),
    });

    // https://{apiId}.execute-api.{region}.amazonaws.com → its host name.
    const apiHost = Fn.select(2, Fn.split('/', props.api.apiEndpoint));
    this.distribution = new Distribution(this, 'Distribution', {
      comment: 'Usage dashboard and its API',
      defaultRootObject: 'index.html',
      httpVersion: HttpVersion.HTTP2_AND_3,
      priceClass: PriceClass.PRICE_CLASS_100,
      enableLogging: true,
      logBucket: this.logsBucket,
      logFilePrefix: 'cloudfront/',
      defaultBehavior: {
        origin: S3BucketOrigin.withOriginAccessControl(this.bucket),
        viewerProtocolPolicy: ViewerProtocolPolicy.REDIRECT_TO_HTTPS,
        cachePolicy: CachePolicy.CACHING_OPTIMIZED,
        responseHeadersPolicy: headers,
        functionAssociations: [{ function: pagePaths, eventType: FunctionEventType.VIEWER_REQUEST }],
      },
      additionalBehaviors: {
        '/v1/*': {
          origin: new HttpOrigin(apiHost, { protocolPolicy: OriginProtocolPolicy.HTTPS_ONLY }),
          viewerProtocolPolicy: ViewerProtocolPolicy.HTTPS_ONLY,
          allowedMethods: AllowedMethods.ALLOW_ALL,
          // Never cached; with caching disabled, this policy forwards Authorization (but not Host, which API Gateway must see as its own).
          cachePolicy: CachePolicy.CACHING_DISABLED,
          originRequestPolicy: OriginRequestPolicy.ALL_VIEWER_EXCEPT_HOST_HEADER,
          responseHeadersPolicy: headers,
        },
      },
    });

    const build = Source.asset(DASHBOARD_ROOT, {
      exclude: ['dist', 'dist.*'],
      bundling: {
        // Built on this machine with the project's own Vite; the image is only named because the API requires one.
        image: DockerImage.fromRegistry('public.ecr.aws/docker/library/node:22-slim'),
        local: {
          tryBundle(outputDir: string) {
            execFileSync(process.execPath, viteBuildArguments(outputDir), { stdio: ['ignore', 'ignore', 'inherit'] });
            return true;
          },
        },
      },
    });
    this.deployments = [
      new BucketDeployment(this, 'DeployAssets', { sources: [build], destinationBucket: this.bucket, exclude: ['*'], include: ['assets/*'], cacheControl: ASSET_CACHE, prune: false }),
      new BucketDeployment(this, 'DeployPage', {
        sources: [build],
        destinationBucket: this.bucket,
        exclude: ['assets/*'],
        cacheControl: [CacheControl.noCache()],
        prune: false,
        distribution: this.distribution,
        distributionPaths: ['/index.html'],
      }),
    ];
    // The page's files go up before the page that names them.
    this.deployments[1]?.node.addDependency(this.deployments[0] as BucketDeployment);

    new CfnOutput(this, 'DashboardUrl', { value: `https://${this.distribution.distributionDomainName}/`, description: 'Usage dashboard (sign in with an API key)' });
  }
}
