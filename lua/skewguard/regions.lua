--- Genesys Cloud regions: AWS-style name -> domain (GENESYS.md "Hosts").
-- New regions appear over time: any domain is accepted as well, and explicit
-- login/API base URLs (proxies, gateways, test servers) bypass this table.
local M = {
  ["us-east-1"] = "mypurecloud.com",
  ["eu-west-1"] = "mypurecloud.ie",
  ["ap-southeast-2"] = "mypurecloud.com.au",
  ["ap-northeast-1"] = "mypurecloud.jp",
  ["eu-central-1"] = "mypurecloud.de",
  ["us-west-2"] = "usw2.pure.cloud",
  ["ca-central-1"] = "cac1.pure.cloud",
  ["ap-northeast-2"] = "apne2.pure.cloud",
  ["eu-west-2"] = "euw2.pure.cloud",
  ["ap-south-1"] = "aps1.pure.cloud",
  ["us-east-2"] = "use2.us-gov-pure.cloud",
  ["sa-east-1"] = "sae1.pure.cloud",
  ["me-central-1"] = "mec1.pure.cloud",
  ["ap-northeast-3"] = "apne3.pure.cloud",
  ["eu-central-2"] = "euc2.pure.cloud",
  ["mx-central-1"] = "mxc1.pure.cloud",
  ["ap-southeast-1"] = "apse1.pure.cloud",
  ["eusc-de-east-1"] = "edee1.eusc-pure.cloud",
}
return M
