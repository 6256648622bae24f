/** The service every log line and metric names; the metrics' one default dimension (`service`). */
export const SERVICE_NAME = 'usage-pipeline';
/** The CloudWatch namespace of the handlers' own metrics (the alarms and the dashboard read it too). */
export const METRICS_NAMESPACE = 'UsagePipeline';
