// Log Analytics + workspace-based Application Insights with local (key) auth disabled: telemetry is
// accepted only from Entra identities holding Monitoring Metrics Publisher (see app-roles.bicep).
param location string
param tags object
param logAnalyticsName string
param applicationInsightsName string

resource logAnalytics 'Microsoft.OperationalInsights/workspaces@2023-09-01' = {
  name: logAnalyticsName
  location: location
  tags: tags
  properties: {
    sku: { name: 'PerGB2018' }
    retentionInDays: 30
  }
}

resource applicationInsights 'Microsoft.Insights/components@2020-02-02' = {
  name: applicationInsightsName
  location: location
  tags: tags
  kind: 'web'
  properties: {
    Application_Type: 'web'
    WorkspaceResourceId: logAnalytics.id
    DisableLocalAuth: true
  }
}

output applicationInsightsName string = applicationInsights.name
// The connection string holds only the ingestion endpoint + instrumentation key (an identifier, not a
// credential once local auth is disabled).
output applicationInsightsConnectionString string = applicationInsights.properties.ConnectionString
