// The flo Function App on Flex Consumption (Node 20), system-assigned identity, every connection
// identity-based: no keys or connection strings in app settings.
param location string
param tags object
param planName string
param functionAppName string
param storageAccountName string
param blobEndpoint string
param queueEndpoint string
param tableEndpoint string
param deploymentContainerName string
param modelContainerName string
param applicationInsightsConnectionString string
param serviceBusFullyQualifiedNamespace string
param jobEventsQueueName string
param notificationsTopicName string
@description('Comma-separated partner names whose commands are accepted; partner <name> sends to queue partner-<name>.')
param partnerAllowList string
param specRegistry string
param retrainSpec string
param retrainSchedule string
param maximumInstanceCount int
param instanceMemoryMB int
@description('Client id of the Entra app registration fronting the API; empty: no Entra front (function keys only).')
param apiEntraClientId string
param apiEntraAllowedAudiences array

resource plan 'Microsoft.Web/serverfarms@2024-04-01' = {
  name: planName
  location: location
  tags: tags
  kind: 'functionapp'
  sku: { name: 'FC1', tier: 'FlexConsumption' }
  properties: { reserved: true }
}

resource functionApp 'Microsoft.Web/sites@2024-04-01' = {
  name: functionAppName
  location: location
  // azd finds the app to deploy `api` to by this tag.
  tags: union(tags, { 'azd-service-name': 'api' })
  kind: 'functionapp,linux'
  identity: { type: 'SystemAssigned' }
  properties: {
    serverFarmId: plan.id
    httpsOnly: true
    siteConfig: {
      minTlsVersion: '1.2'
      ftpsState: 'Disabled'
      appSettings: [
        // Functions host + Durable task hub storage, identity-based.
        { name: 'AzureWebJobsStorage__accountName', value: storageAccountName }
        { name: 'AzureWebJobsStorage__blobServiceUri', value: blobEndpoint }
        { name: 'AzureWebJobsStorage__queueServiceUri', value: queueEndpoint }
        { name: 'AzureWebJobsStorage__tableServiceUri', value: tableEndpoint }
        { name: 'AzureWebJobsStorage__credential', value: 'managedidentity' }
        // Telemetry with Entra auth (the resource has local auth disabled).
        { name: 'APPLICATIONINSIGHTS_CONNECTION_STRING', value: applicationInsightsConnectionString }
        { name: 'APPLICATIONINSIGHTS_AUTHENTICATION_STRING', value: 'Authorization=AAD' }
        // Service Bus triggers/outputs and the notifications publisher, identity-based.
        { name: 'ServiceBusConnection__fullyQualifiedNamespace', value: serviceBusFullyQualifiedNamespace }
        { name: 'ServiceBusConnection__credential', value: 'managedidentity' }
        { name: 'FLO_JOB_EVENTS_QUEUE', value: jobEventsQueueName }
        { name: 'FLO_NOTIFICATIONS_TOPIC', value: notificationsTopicName }
        { name: 'FLO_MODEL_CONTAINER', value: modelContainerName }
        { name: 'FLO_AZURE_CREDENTIAL', value: 'managedidentity' }
        { name: 'FLO_PARTNER_ALLOWLIST', value: partnerAllowList }
        { name: 'FLO_SPEC_REGISTRY', value: specRegistry }
        { name: 'FLO_RETRAIN_SPEC', value: retrainSpec }
        { name: 'FLO_RETRAIN_SCHEDULE', value: retrainSchedule }
      ]
    }
    functionAppConfig: {
      deployment: {
        storage: {
          type: 'blobContainer'
          value: '${blobEndpoint}${deploymentContainerName}'
          authentication: { type: 'SystemAssignedIdentity' }
        }
      }
      scaleAndConcurrency: {
        maximumInstanceCount: maximumInstanceCount
        instanceMemoryMB: instanceMemoryMB
      }
      runtime: { name: 'node', version: '20' }
    }
  }
}

// No basic-auth publishing: deployments go through Entra (azd uses the deployer's identity), so a
// leaked publishing password cannot push code.
resource scmBasicPublishing 'Microsoft.Web/sites/basicPublishingCredentialsPolicies@2024-04-01' = {
  parent: functionApp
  name: 'scm'
  properties: { allow: false }
}

resource ftpBasicPublishing 'Microsoft.Web/sites/basicPublishingCredentialsPolicies@2024-04-01' = {
  parent: functionApp
  name: 'ftp'
  properties: { allow: false }
}

// Optional Entra ID front (App Service authentication): every HTTP request needs a valid token for
// the registration in addition to the function key; unauthenticated requests get 401, never a redirect.
resource entraFront 'Microsoft.Web/sites/config@2024-04-01' = if (!empty(apiEntraClientId)) {
  parent: functionApp
  name: 'authsettingsV2'
  properties: {
    platform: { enabled: true }
    globalValidation: {
      requireAuthentication: true
      unauthenticatedClientAction: 'Return401'
    }
    identityProviders: {
      azureActiveDirectory: {
        enabled: true
        registration: {
          clientId: apiEntraClientId
          openIdIssuer: '${environment().authentication.loginEndpoint}${tenant().tenantId}/v2.0'
        }
        validation: {
          allowedAudiences: empty(apiEntraAllowedAudiences) ? [ 'api://${apiEntraClientId}' ] : apiEntraAllowedAudiences
        }
      }
    }
    login: { tokenStore: { enabled: false } }
  }
}

output functionAppName string = functionApp.name
output principalId string = functionApp.identity.principalId
output defaultHostName string = functionApp.properties.defaultHostName
